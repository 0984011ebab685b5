"""The hook that routes mmcv's CPU RoIAlign to ops_roialign's kernel: used by mmcv's RoIAlign layer (forward and
backward) once installed, removable, and CUDA/half tensors left to mmcv; channels-last features (which mmcv's kernels
read as NCHW) pooled right on both kernels, against torchvision, mmcv on a contiguous copy and a float64 hand case."""
from __future__ import annotations

import pytest
import torch

import ops_roialign

if not ops_roialign.extension_available():
    pytest.skip('ops_roialign._C is not built (make setup builds it)', allow_module_level=True)

mmcv_roi_align = pytest.importorskip('mmcv.ops.roi_align')
from mmcv.ops import RoIAlign  # noqa: E402

import mmcv_custom  # noqa: E402,F401  (installs the hook)
from ops_roialign.mmcv_route import patch_mmcv_roi_align_cpu, roi_align_kernel_installed  # noqa: E402

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


def test_opt_out_restores_mmcv_kernel(monkeypatch):
    assert roi_align_kernel_installed()
    calls = []
    dispatch = mmcv_roi_align.ext_module
    monkeypatch.setattr(dispatch, 'mmcv_ext', _Recorder(dispatch.mmcv_ext, calls, prefix='mmcv.'))
    try:
        assert patch_mmcv_roi_align_cpu(enable=False) is False
        assert not roi_align_kernel_installed()
        RoIAlign((2, 2), spatial_scale=1.0, sampling_ratio=1)(torch.randn(1, 2, 8, 8), torch.tensor([[0., 1, 1, 6, 6]]))
        assert calls == ['mmcv.roi_align_forward']
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


@pytest.fixture(params=['ops_roialign', 'mmcv'])
def kernel_route(request):
    """Both kernels behind mmcv's RoIAlign: ops_roialign's and mmcv's own (INTERNIMAGE_MMCV_ROI_ALIGN=1)."""
    patch_mmcv_roi_align_cpu(enable=request.param == 'ops_roialign')
    try:
        yield request.param
    finally:
        patch_mmcv_roi_align_cpu(enable=True)


def _channels_last(tensor: torch.Tensor) -> torch.Tensor:
    out = tensor.detach().contiguous(memory_format=torch.channels_last).requires_grad_(tensor.requires_grad)
    assert not out.is_contiguous()     # a real stride change (C > 1, H * W > 1), not a no-op
    return out


CHANNELS_LAST_ROIS = torch.tensor([[0., 4., 4., 60., 50.], [1., 10., 3., 80., 70.], [1., -8., 20., 30., 95.]])


@pytest.mark.parametrize('pool_mode', ['avg', 'max'])
def test_channels_last_features_equal_contiguous_mmcv(kernel_route, pool_mode):
    """Forward and backward on channels-last features (and output gradient) equal mmcv's own kernel on contiguous
    copies."""
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 8, 20, 24, generator=generator, requires_grad=True)
    grad = torch.randn(3, 8, 7, 7, generator=generator)
    layer = RoIAlign((7, 7), spatial_scale=0.25, sampling_ratio=2, pool_mode=pool_mode, aligned=True)
    strided = _channels_last(features)
    out = layer(strided, CHANNELS_LAST_ROIS)
    out.backward(_channels_last(grad))
    patch_mmcv_roi_align_cpu(enable=False)               # the reference: mmcv's kernel, contiguous input
    expected = layer(features, CHANNELS_LAST_ROIS)
    expected.backward(grad)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(strided.grad, features.grad)


def test_dispatcher_backward_takes_strided_grad_output(kernel_route):
    """Called directly (mmcv's autograd function makes grad_output contiguous itself), the dispatcher's backward
    gives a channels-last grad_output's gradient as for a contiguous one."""
    generator = torch.Generator().manual_seed(3)
    grad = torch.randn(3, 8, 7, 7, generator=generator)
    kwargs = dict(aligned_height=7, aligned_width=7, spatial_scale=0.25, sampling_ratio=2, pool_mode=1, aligned=True)
    grads = []
    for grad_output in (grad, _channels_last(grad)):
        grads.append(torch.zeros(2, 8, 20, 24))
        mmcv_roi_align.ext_module.roi_align_backward(grad_output, CHANNELS_LAST_ROIS, torch.zeros(0), torch.zeros(0),
                                                     grads[-1], **kwargs)
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0])


def test_channels_last_features_equal_torchvision(kernel_route):
    torchvision_ops = pytest.importorskip('torchvision.ops')
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(2, 16, 25, 30, generator=generator, requires_grad=True)
    reference = features.detach().clone().requires_grad_()
    grad = torch.randn(3, 16, 5, 6, generator=generator)
    strided = _channels_last(features)
    out = RoIAlign((5, 6), spatial_scale=0.25, sampling_ratio=0, aligned=True)(strided, CHANNELS_LAST_ROIS)
    out.backward(grad)
    expected = torchvision_ops.roi_align(reference, CHANNELS_LAST_ROIS, (5, 6), 0.25, 0, aligned=True)
    expected.backward(grad)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(strided.grad, reference.grad)


def test_channels_last_hand_computed_float64(kernel_route):
    """Channel c holds the ramp f(y, x) = x + 100 c; aligned bins of the box x 1.5..5.5 average to x = 2 and 4."""
    ramp = torch.arange(8, dtype=torch.float64).repeat(1, 3, 6, 1) + 100 * torch.arange(3.).view(1, 3, 1, 1)
    out = RoIAlign((2, 2), spatial_scale=1.0, sampling_ratio=2, aligned=True)(
        _channels_last(ramp), torch.tensor([[0., 1.5, 0.5, 5.5, 4.5]], dtype=torch.float64))
    expected = torch.tensor([[2., 4.], [2., 4.]], dtype=torch.float64) + 100 * torch.arange(3.).view(3, 1, 1)
    torch.testing.assert_close(out, expected[None])


def test_channels_last_fpn_levels_in_mmdet_roi_extractor():
    """mmdet's SingleRoIExtractor (Mask R-CNN's) over channels-last FPN levels equals the contiguous levels."""
    from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
    generator = torch.Generator().manual_seed(2)
    extractor = SingleRoIExtractor(dict(type='RoIAlign', output_size=7, sampling_ratio=0), 8, [4, 8, 16, 32])
    levels = [torch.randn(1, 8, 64 // 2 ** i, 80 // 2 ** i, generator=generator) for i in range(4)]
    rois = torch.tensor([[0., 3., 5., 20., 30.], [0., 10., 10., 200., 180.], [0., 0., 0., 310., 250.]])
    torch.testing.assert_close(extractor([_channels_last(level) for level in levels], rois), extractor(levels, rois))


class _Recorder:

    def __init__(self, kernel, calls, prefix=''):
        self.kernel, self.calls, self.prefix = kernel, calls, prefix

    def __getattr__(self, name):
        self.calls.append(self.prefix + name)
        return getattr(self.kernel, name)
