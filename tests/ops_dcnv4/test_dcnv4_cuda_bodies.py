"""The CUDA kernels' per-thread bodies, run on the host by ops_dcnv4._C's harness, against the PyTorch reference.

The harness (src/host/dcnv4_cuda_bodies_host.cpp) calls the same functions the CUDA kernels call
(src/common/dcnv4_cuda_bodies.h) for every thread index, with std::atomic_ref standing in for atomicAdd; so these
tests cover the CUDA path's index decomposition, packed-layout addressing, sampling and scatter without a GPU. Test
names contain `cuda`, so `pytest -k cuda` selects them with the real CUDA tests.
"""
from __future__ import annotations

import pytest
import torch

from ops_dcnv4.functions import dcnv4_core_pytorch, load_extension
from tests.ops_dcnv4.dcnv4_cases import (
    HALF_TOLERANCE,
    KERNEL_CASES,
    KERNEL_IDS,
    assert_results_close,
    case_args,
    float64_kernel_on_rounded_inputs,
    make_case,
    run_core,
)

_C = load_extension()
pytestmark = pytest.mark.skipif(_C is None, reason='ops_dcnv4._C is not built (make setup)')


@pytest.mark.parametrize('case', KERNEL_CASES, ids=KERNEL_IDS)
@pytest.mark.parametrize('dtype, tol', [(torch.float64, 1e-10), (torch.float32, 1e-4)], ids=['float64', 'float32'])
def test_cuda_bodies_on_cpu_match_reference(case, dtype, tol):
    assert_results_close(run_core('cuda_bodies', case, dtype), run_core('reference', case, dtype), tol)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('case', [KERNEL_CASES[1], KERNEL_CASES[5]], ids=['remove_center', 'k5x3_stride'])
def test_cuda_bodies_on_cpu_half_precision(case, dtype):
    assert_results_close(run_core('cuda_bodies', case, dtype), float64_kernel_on_rounded_inputs(case, dtype),
                         HALF_TOLERANCE[dtype])




def test_cuda_bodies_on_cpu_padding_channels_not_read_and_every_entry_written():
    case = (1, 6, 7, 1, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1.0, False, 2.0)  # 27 used channels of 32
    x, offset_mask = make_case(*case[:13], remove_center=False)
    args = case_args(case)
    poisoned = offset_mask.clone()
    poisoned[..., 27:] = float('nan')
    out = _C.cuda_bodies_forward_host(x, poisoned, *args, 64, 0)
    grads = _C.cuda_bodies_backward_host(x, poisoned, torch.randn_like(out), *args, 64, 0)
    torch.testing.assert_close(out, dcnv4_core_pytorch(x, offset_mask, *args))
    assert torch.all(grads[1][..., 27:] == 0)
    # The harness fills grad_offset_mask with NaN before the bodies run: an entry they skip stays NaN.
    assert torch.isfinite(grads[0]).all() and torch.isfinite(grads[1]).all()
