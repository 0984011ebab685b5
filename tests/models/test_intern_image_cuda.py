"""InternImage on a GPU (marker `cuda`): CUDA against the same weights on the CPU, checkpointing, autocast.

The model has InternImage-T's stage shapes (channels 64..512, groups 4..32: 16 channels per group) with one block
per stage, at a small input. Skipped, with the reason, where no CUDA device is visible or ops_dcnv3._C lacks CUDA.
Imports torch, timm and the plain-PyTorch backbone only (no mmcv/mmdet), so tools/gpu_check.sh runs it on a bare
GPU machine.
"""
from __future__ import annotations

import copy
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from mmdet_custom.models.backbones.intern_image import InternImage
from tests.ops_dcnv3.dcnv3_cases import cuda_kernel_skip_reason

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(cuda_kernel_skip_reason() is not None,
                                                  reason=str(cuda_kernel_skip_reason()))]

@pytest.fixture(autouse=True)
def _no_tf32():
    """Full float32 convolutions and matmuls on the GPU (cuDNN defaults to TF32 convolutions on Ampere+), so that
    CUDA and CPU results differ by rounding order only."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


SMALL_T = dict(depths=[1, 1, 1, 1], drop_path_rate=0.0)  # T's widths and groups, one block per stage


def randomised_t(core_op: str = 'DCNv3', seed: int = 0, **overrides) -> InternImage:
    """InternImage-T stage shapes with random parameters (so no zero/one init hides a wiring mistake)."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        model = InternImage.from_variant('T', core_op=core_op, **{**SMALL_T, **overrides})
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            fan_in = param[0].numel() if param.dim() > 1 else 1
            if name.rsplit('.', 1)[-1].startswith('gamma') or ('norm' in name and name.endswith('weight')):
                param.copy_(1 + 0.1 * noise)
            else:
                param.copy_((3.0 if '.dcn.offset.' in name else 1.0) * noise / fan_in ** 0.5)
    return model


def forward_backward(model, image):
    """Outputs and parameter gradients of sum_i mean(out_i^2)."""
    model.zero_grad()
    outs = model(image)
    sum(o.float().square().mean() for o in outs).backward()
    return [o.detach() for o in outs], {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def assert_close_scaled(actual, expected, tol: float, what: str) -> None:
    scale = max(1.0, expected.abs().max().item())
    torch.testing.assert_close(actual.cpu().float(), expected.cpu().float(), rtol=tol, atol=tol * scale, msg=what)


def test_cuda_backbone_matches_cpu_forward_and_backward():
    model = randomised_t()
    image = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    cpu_outs, cpu_grads = forward_backward(model, image)
    cuda_model = copy.deepcopy(model).cuda()
    cuda_outs, cuda_grads = forward_backward(cuda_model, image.cuda())
    assert [o.shape for o in cuda_outs] == [(2, 64, 16, 24), (2, 128, 8, 12), (2, 256, 4, 6), (2, 512, 2, 3)]
    for i, (a, b) in enumerate(zip(cuda_outs, cpu_outs)):
        assert_close_scaled(a, b, 1e-3, f'stage {i} output, CUDA vs CPU')
    for name, grad in cpu_grads.items():
        assert_close_scaled(cuda_grads[name], grad, 2e-3, f'grad of {name}, CUDA vs CPU')


def test_cuda_with_cp_gives_the_same_outputs_and_gradients():
    model = randomised_t().cuda()
    image = torch.randn(2, 3, 64, 96, device='cuda')
    plain_outs, plain_grads = forward_backward(model, image)
    checkpointed = copy.deepcopy(model)
    for module in checkpointed.modules():
        if hasattr(module, 'with_cp'):
            module.with_cp = True
    cp_outs, cp_grads = forward_backward(checkpointed, image)
    for a, b in zip(cp_outs, plain_outs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for name, grad in plain_grads.items():
        torch.testing.assert_close(cp_grads[name], grad, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16], ids=['float16', 'bfloat16'])
def test_cuda_autocast_is_close_to_float32(dtype):
    model = randomised_t().cuda()
    image = torch.randn(2, 3, 64, 96, device='cuda')
    with torch.no_grad():
        expected = model(image)
    with torch.autocast('cuda', dtype=dtype):
        outs, grads = forward_backward(model, image)
    tol = 5e-2 if dtype == torch.float16 else 1.5e-1
    for i, (a, b) in enumerate(zip(outs, expected)):
        assert torch.isfinite(a.float()).all()
        assert_close_scaled(a, b, tol, f'stage {i} output, autocast {dtype} vs float32')
    assert all(torch.isfinite(g).all() for g in grads.values())


def test_cuda_compiled_and_pytorch_cores_agree():
    model = randomised_t('DCNv3').cuda()
    reference = randomised_t('DCNv3_pytorch').cuda()
    reference.load_state_dict(model.state_dict())
    image = torch.randn(2, 3, 64, 96, device='cuda')
    outs, grads = forward_backward(model, image)
    ref_outs, ref_grads = forward_backward(reference, image)
    for i, (a, b) in enumerate(zip(outs, ref_outs)):
        assert_close_scaled(a, b, 1e-3, f'stage {i} output, DCNv3 vs DCNv3_pytorch on CUDA')
    for name, grad in ref_grads.items():
        assert_close_scaled(grads[name], grad, 2e-3, f'grad of {name}, DCNv3 vs DCNv3_pytorch on CUDA')


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason='needs two CUDA devices for the NCCL DDP step')
def test_cuda_two_process_nccl_ddp_step():
    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(repo), os.environ.get('PYTHONPATH', '')]))
    result = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                             str(repo / 'tests/models/ddp_step_worker.py')], cwd=repo, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'ddp step ok' in result.stdout
