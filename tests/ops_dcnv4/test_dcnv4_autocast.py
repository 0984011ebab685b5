"""DCNv4 under autocast (fp16, bf16): the offsets/mask projection is cast to the sampled tensor's dtype, so the
module runs under CUDA autocast (forward on fake CUDA tensors; the value tensor is the float32 input itself when
there is no value projection) and forward + backward under CPU autocast, against the float32 module."""
from __future__ import annotations

import warnings

import pytest
import torch

from ops_dcnv4.modules import DCNv4
from tests.autocast_helpers import (
    AUTOCAST_DTYPES,
    assert_close_relative,
    fake_cuda_autocast,
    without_compiled_kernels,
)


def build(**kwargs) -> DCNv4:
    torch.manual_seed(0)
    module = DCNv4(channels=32, group=2, **kwargs)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn_like(param) * 0.2)
    return module


VARIANTS = [dict(), dict(without_pointwise=True), dict(dw_kernel_size=3, center_feature_scale=True)]


@pytest.mark.parametrize('kwargs', VARIANTS, ids=lambda k: ','.join(k) or 'default')
@pytest.mark.parametrize('dtype', AUTOCAST_DTYPES, ids=str)
def test_forward_under_cuda_autocast(kwargs, dtype):
    module = build(**kwargs)
    with fake_cuda_autocast(dtype), without_compiled_kernels(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        module = module.to('cuda')
        out = module(torch.randn(2, 36, 32, device='cuda'), (6, 6))
    assert out.shape == (2, 36, 32)
    # With a value projection the output is output_proj's (the autocast dtype); without one, the input's.
    assert out.dtype == (torch.float32 if kwargs.get('without_pointwise') else dtype)


@pytest.mark.parametrize('kwargs', VARIANTS, ids=lambda k: ','.join(k) or 'default')
@pytest.mark.parametrize('dtype', AUTOCAST_DTYPES, ids=str)
def test_forward_backward_under_cpu_autocast(kwargs, dtype):
    module = build(**kwargs)
    x = torch.randn(2, 36, 32)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        reference = module(x, (6, 6))
        x_amp = x.clone().requires_grad_()
        with torch.autocast('cpu', dtype=dtype):
            out = module(x_amp, (6, 6))
    assert_close_relative(out, reference)
    out.float().square().sum().backward()
    assert x_amp.grad is not None and x_amp.grad.dtype == torch.float32 and torch.isfinite(x_amp.grad).all()
    for name, param in module.named_parameters():
        assert param.grad is not None and param.grad.dtype == param.dtype, name
