"""The hook that routes mmcv's CPU RoIAlign to ops_roialign's kernel: used by mmcv's RoIAlign layer (forward and
backward) once installed, removable, and CUDA/half tensors left to mmcv."""
from __future__ import annotations

import pytest
import torch

import ops_roialign

if not ops_roialign.extension_available():
    pytest.skip('ops_roialign._C is not built (make setup builds it)', allow_module_level=True)

mmcv_roi_align = pytest.importorskip('mmcv.ops.roi_align')
from mmcv.ops import RoIAlign  # noqa: E402

import mmcv_custom  # noqa: E402,F401  (installs the hook)
from mmcv_custom.roi_align_cpu import patch_mmcv_roi_align_cpu, roi_align_kernel_installed  # noqa: E402

KERNEL = ops_roialign.load_extension()


def _mmcv_ext():
    ext = mmcv_roi_align.ext_module
    return getattr(ext, 'mmcv_ext', ext)


def test_mmcv_roi_align_module_is_routed_to_the_kernel_on_cpu(monkeypatch):
    calls = []
    dispatch = mmcv_roi_align.ext_module
    monkeypatch.setattr(dispatch, 'kernel', _Recorder(KERNEL, calls))
    layer = RoIAlign((7, 7), spatial_scale=0.25, sampling_ratio=0, aligned=True)
    features = torch.randn(1, 4, 16, 16, requires_grad=True)
    layer(features, torch.tensor([[0., 4., 4., 40., 50.]])).sum().backward()
    assert calls == ['roi_align_forward', 'roi_align_backward']


def test_opt_out_restores_mmcv_kernel():
    assert roi_align_kernel_installed()
    try:
        assert patch_mmcv_roi_align_cpu(enable=False) is False
        assert not roi_align_kernel_installed()
        assert mmcv_roi_align.ext_module is _mmcv_ext()
    finally:
        assert patch_mmcv_roi_align_cpu(enable=True) is True
    assert roi_align_kernel_installed()


def test_half_precision_is_pooled_in_float32_by_the_kernel(monkeypatch):
    """Half-precision features are pooled in float32 (mmcv_custom.autocast_compat), so they reach the kernel too."""
    calls = []
    dispatch = mmcv_roi_align.ext_module
    monkeypatch.setattr(dispatch, 'kernel', _Recorder(KERNEL, calls))
    monkeypatch.setattr(dispatch, 'mmcv_ext', _Recorder(dispatch.mmcv_ext, calls, prefix='mmcv.'))
    layer = RoIAlign((2, 2), spatial_scale=1.0, sampling_ratio=1, aligned=True)
    layer(torch.randn(1, 2, 8, 8).double(), torch.tensor([[0., 1., 1., 6., 6.]]).double())
    out = layer(torch.randn(1, 2, 8, 8).half(), torch.tensor([[0., 1., 1., 6., 6.]]).half())
    assert calls == ['roi_align_forward', 'roi_align_forward'] and out.dtype == torch.float16


class _Recorder:

    def __init__(self, kernel, calls, prefix=''):
        self.kernel, self.calls, self.prefix = kernel, calls, prefix

    def __getattr__(self, name):
        self.calls.append(self.prefix + name)
        return getattr(self.kernel, name)
