"""The multi-threaded CPU RoIAlign (ops_roialign._C) against mmcv's own CPU kernel (forward and backward, both
pooling modes, aligned and legacy boxes, fixed and adaptive sampling, boxes crossing the border) and torchvision's
(average pooling), a hand-computed case, float64 gradcheck through mmcv's autograd function, and thread-count
independence."""
from __future__ import annotations

import pytest
import torch

import ops_roialign

if not ops_roialign.extension_available():
    pytest.skip('ops_roialign._C is not built (make setup builds it)', allow_module_level=True)

mmcv_roi_align = pytest.importorskip('mmcv.ops.roi_align')
from mmcv.ops import roi_align  # noqa: E402

import mmcv_custom  # noqa: E402,F401  (installs the hook)
from ops_roialign.mmcv_route import roi_align_kernel_installed  # noqa: E402

KERNEL = ops_roialign.load_extension()


def _mmcv_ext():
    ext = mmcv_roi_align.ext_module
    return getattr(ext, 'mmcv_ext', ext)


def _rois(num: int, height: int, width: int, scale: float, batch: int, generator) -> torch.Tensor:
    """Boxes in image pixels (features are ``1/scale`` smaller); some cross the border or lie outside, some tiny."""
    image_h, image_w = height / scale, width / scale
    top_left = torch.rand(num, 2, generator=generator) * torch.tensor([image_w, image_h]) * 1.1 - 10
    size = torch.rand(num, 2, generator=generator) * torch.tensor([image_w, image_h]) * 0.6 + 0.3
    index = torch.randint(0, batch, (num, 1), generator=generator).float()
    return torch.cat([index, top_left, top_left + size], 1)


def _run(ext, features, rois, output_size, scale, sampling_ratio, pool_mode, aligned, grad_output):
    """Forward then backward through ``ext``'s two entry points (mmcv's calling convention)."""
    shape = (rois.size(0), features.size(1), *output_size)
    output = features.new_zeros(shape)
    argmax_y = features.new_zeros(shape if pool_mode == 0 else 0)
    argmax_x = features.new_zeros(shape if pool_mode == 0 else 0)
    kwargs = dict(aligned_height=output_size[0], aligned_width=output_size[1], spatial_scale=scale,
                  sampling_ratio=sampling_ratio, pool_mode=pool_mode, aligned=aligned)
    ext.roi_align_forward(features, rois, output, argmax_y, argmax_x, **kwargs)
    grad_input = torch.zeros_like(features)
    ext.roi_align_backward(grad_output, rois, argmax_y, argmax_x, grad_input, **kwargs)
    return output, grad_input, argmax_y, argmax_x


# (batch, height, width, RoIs): many RoIs on a small map take the average-pooling forward over a channels-last
# copy; few RoIs on a large map the direct one (the kernel picks by the number of reads).
LOADS = {'many_rois': (2, 13, 17, 23), 'few_rois': (1, 60, 70, 2)}


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('pool_mode', [0, 1])          # 0: max, 1: avg (mmcv's codes)
@pytest.mark.parametrize('aligned', [True, False])
@pytest.mark.parametrize('sampling_ratio', [0, 2])
@pytest.mark.parametrize('load', sorted(LOADS))
def test_equals_mmcv_kernel(dtype, pool_mode, aligned, sampling_ratio, load):
    batch, height, width, num_rois = LOADS[load]
    generator = torch.Generator().manual_seed(pool_mode * 4 + aligned * 2 + sampling_ratio)
    features = torch.randn(batch, 5, height, width, generator=generator, dtype=dtype)
    rois = _rois(num_rois, height, width, 0.25, batch, generator).to(dtype)
    if load == 'few_rois':
        # small boxes (one sample per bin), one inside the map and one across its bottom-right border
        rois[:, 1:3] = torch.tensor([[20.0, 30.0], [276.0, 236.0]], dtype=dtype)
        rois[:, 3:] = rois[:, 1:3] + torch.tensor([6.0, 9.0], dtype=dtype)
    if not aligned:
        rois[0, 3:] = rois[0, 1:3] + 0.2                  # below one pixel: the legacy mode widens it to 1
    grad_output = torch.randn(num_rois, 5, 7, 6, generator=generator, dtype=dtype)
    args = (features, rois, (7, 6), 0.25, sampling_ratio, pool_mode, aligned, grad_output)
    ours = _run(KERNEL, *args)
    theirs = _run(_mmcv_ext(), *args)
    tolerance = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    for name, mine, reference in zip(('output', 'grad_input', 'argmax_y', 'argmax_x'), ours, theirs):
        torch.testing.assert_close(mine, reference, **tolerance, msg=name)
    assert ours[0].abs().sum() > 0 and ours[1].abs().sum() > 0


@pytest.mark.parametrize('aligned', [True, False])
@pytest.mark.parametrize('sampling_ratio', [0, 3])
def test_average_equals_torchvision(aligned, sampling_ratio):
    """A second, independent reference for average pooling: torchvision's roi_align (forward and autograd)."""
    torchvision_ops = pytest.importorskip('torchvision.ops')
    generator = torch.Generator().manual_seed(sampling_ratio + aligned)
    features = torch.randn(2, 6, 15, 19, generator=generator, dtype=torch.float64, requires_grad=True)
    rois = _rois(31, 15, 19, 0.125, 2, generator).double()   # many reads: the channels-last path
    expected = torchvision_ops.roi_align(features, rois, (5, 4), 0.125, sampling_ratio, aligned)
    grad_output = torch.randn(expected.shape, generator=generator, dtype=torch.float64)
    expected.backward(grad_output)
    output, grad_input, _, _ = _run(KERNEL, features.detach(), rois, (5, 4), 0.125, sampling_ratio, 1, aligned,
                                    grad_output)
    torch.testing.assert_close(output, expected.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_input, features.grad, rtol=1e-12, atol=1e-12)


def test_hand_computed_average():
    """A ramp f(y, x) = x: with aligned boxes the bilinear average over a bin is the bin centre's x."""
    features = torch.arange(8, dtype=torch.float32).repeat(1, 1, 6, 1)   # (1, 1, 6, 8): value = column index
    rois = torch.tensor([[0., 1.5, 0.5, 5.5, 4.5]])                       # x from 1.5 to 5.5 (pixels, scale 1)
    output = torch.zeros(1, 1, 2, 2)
    empty = torch.zeros(0)
    KERNEL.roi_align_forward(features, rois, output, empty, empty, aligned_height=2, aligned_width=2,
                             spatial_scale=1.0, sampling_ratio=2, pool_mode=1, aligned=True)
    # aligned: coordinates shift by -0.5, so x runs 1..5; bin centres at x = 2 and 4.
    torch.testing.assert_close(output, torch.tensor([[[[2., 4.], [2., 4.]]]]))


def test_gradcheck_float64():
    generator = torch.Generator().manual_seed(3)
    features = torch.randn(1, 3, 9, 11, generator=generator, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0., 3.3, 2.1, 30.7, 25.2], [0., -6.0, 10.0, 12.5, 50.0]], dtype=torch.float64)
    assert roi_align_kernel_installed()
    assert torch.autograd.gradcheck(lambda f: roi_align(f, rois, (4, 3), 0.25, 2, 'avg', True), (features,))


def test_same_result_on_one_and_two_threads():
    generator = torch.Generator().manual_seed(5)
    features = torch.randn(2, 32, 25, 30, generator=generator)
    rois = _rois(60, 25, 30, 0.125, 2, generator)
    grad_output = torch.randn(60, 32, 7, 7, generator=generator)
    threads = torch.get_num_threads()
    try:
        results = []
        for count in (1, 2):
            torch.set_num_threads(count)
            results.append(_run(KERNEL, features, rois, (7, 7), 0.125, 0, 1, True, grad_output))
    finally:
        torch.set_num_threads(threads)
    for one, two in zip(*results):
        assert torch.equal(one, two)


def test_bad_rois_are_one_clear_error():
    features = torch.randn(1, 2, 8, 8)
    output = torch.zeros(1, 2, 2, 2)
    empty = torch.zeros(0)
    with pytest.raises(RuntimeError, match='rois must be'):
        KERNEL.roi_align_forward(features, torch.zeros(1, 4), output, empty, empty, aligned_height=2,
                                 aligned_width=2, spatial_scale=1.0, sampling_ratio=0, pool_mode=1, aligned=True)
