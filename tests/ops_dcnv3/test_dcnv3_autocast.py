"""Every DCNv3 route under autocast (fp16, bf16): the sampled value tensor, the offsets and the mask reach the core
in one dtype and the module runs, forward on fake CUDA tensors (CUDA's autocast policy runs softmax in float32,
which once stopped every non-kernel route with "mask has dtype torch.float32 but input has dtype torch.bfloat16")
and forward + backward under CPU autocast, against the float32 module."""
from __future__ import annotations

import warnings

import pytest
import torch

from ops_dcnv3.functions import extension_available
from ops_dcnv3.modules import DCNv3, DCNv3_pytorch
from ops_dcnv4.modules import DCNv3OnDCNv4
from tests.autocast_helpers import (
    AUTOCAST_DTYPES,
    assert_close_relative,
    fake_cuda_autocast,
    without_compiled_kernels,
)

ROUTES = {
    'pytorch': (DCNv3_pytorch, {}),
    'kernel_or_fallback': (DCNv3, {}),  # on CUDA without a CUDA build of the extension: the PyTorch fallback
    'dcn_v4': (DCNv3OnDCNv4, {}),
}


def build(route: str, **kwargs) -> torch.nn.Module:
    cls, extra = ROUTES[route]
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        module = cls(channels=32, group=2, offset_scale=1.0, **extra, **kwargs)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn_like(param) * 0.2)
    return module


@pytest.mark.parametrize('center_feature_scale', [False, True])
@pytest.mark.parametrize('dtype', AUTOCAST_DTYPES, ids=str)
@pytest.mark.parametrize('route', sorted(ROUTES))
def test_forward_under_cuda_autocast(route, dtype, center_feature_scale):
    module = build(route, center_feature_scale=center_feature_scale)
    with fake_cuda_autocast(dtype), without_compiled_kernels(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        module = module.to('cuda')
        x = torch.randn(2, 6, 7, 32, device='cuda')
        out = module(x)
        core = module._core(module.input_proj(x), module.offset(x).type(dtype), module.mask(x).type(dtype),
                            mask_softmax=True) if isinstance(module, DCNv3) else None
    assert out.shape == (2, 6, 7, 32) and out.device.type == 'cuda'
    assert out.dtype == dtype  # output_proj is a Linear: the autocast dtype
    if core is not None:
        assert core.dtype == dtype  # the core returns the dtype of the tensor it samples


@pytest.mark.parametrize('dtype', AUTOCAST_DTYPES, ids=str)
@pytest.mark.parametrize('route', sorted(ROUTES))
def test_forward_backward_under_cpu_autocast(route, dtype):
    if route == 'kernel_or_fallback' and not extension_available():
        pytest.skip('ops_dcnv3._C is not built: the kernel route is the PyTorch route here')
    module = build(route, center_feature_scale=True)
    x = torch.randn(2, 6, 7, 32)
    reference = module(x)
    x_amp = x.clone().requires_grad_()
    with torch.autocast('cpu', dtype=dtype):
        out = module(x_amp)
    assert out.dtype == dtype
    assert_close_relative(out, reference)
    out.float().square().sum().backward()
    assert x_amp.grad is not None and x_amp.grad.dtype == torch.float32 and torch.isfinite(x_amp.grad).all()
    for name, param in module.named_parameters():
        assert param.grad is not None and param.grad.dtype == param.dtype, name
