"""Route mmcv's CPU RoIAlign to the multi-threaded kernel of :mod:`ops_roialign`.

mmcv 1.7's CPU RoIAlign runs on one thread; in Mask R-CNN CPU inference it is the third-largest cost after the
Linear and convolution layers. mmdet's RoI extractors build ``mmcv.ops.RoIAlign`` by name (not through a registry),
so the hook is one level lower: ``RoIAlignFunction`` calls ``ext_module.roi_align_forward/backward`` of
``mmcv.ops.roi_align``, and that module attribute is replaced by a dispatcher that sends CPU float/double tensors to
``ops_roialign._C`` (same arguments, same in-place outputs, same semantics) and everything else (CUDA, half) to
mmcv's own kernels. mmcv's autograd function, its argument checks and its ONNX symbolic are untouched.

The dispatcher also hands every kernel (its own and mmcv's, on any device) contiguous tensors: mmcv's kernels read
``data_ptr()`` as NCHW whatever the strides, so channels-last features (an FPN fed by a channels-last backbone)
silently pooled the wrong pixels. It is installed at ``import mmcv_custom`` in every case, routing to
``ops_roialign._C`` when that is built and not opted out of with ``INTERNIMAGE_MMCV_ROI_ALIGN=1`` (which keeps mmcv's
kernel, e.g. to measure the difference).
"""
from __future__ import annotations

import importlib
import os

import torch

from . import load_extension

OPT_OUT_VARIABLE = 'INTERNIMAGE_MMCV_ROI_ALIGN'


class _RoIAlignDispatch:
    """Stands in for mmcv's ``ext_module`` inside ``mmcv.ops.roi_align``; ``kernel=None``: mmcv's kernels only."""

    def __init__(self, mmcv_ext, kernel) -> None:
        self.mmcv_ext = mmcv_ext
        self.kernel = kernel

    def _ours(self, *tensors: torch.Tensor) -> bool:
        return self.kernel is not None and all(
            t.device.type == 'cpu' and t.dtype in (torch.float32, torch.float64) for t in tensors)

    def roi_align_forward(self, input, rois, output, argmax_y, argmax_x, **kwargs):
        # ``output`` and the argmax maps are mmcv's fresh (contiguous) allocations, written in place.
        input, rois = input.contiguous(), rois.contiguous()
        ext = self.kernel if self._ours(input, rois) else self.mmcv_ext
        return ext.roi_align_forward(input, rois, output, argmax_y, argmax_x, **kwargs)

    def roi_align_backward(self, grad_output, rois, argmax_y, argmax_x, grad_input, **kwargs):
        # ``grad_input`` is mmcv's fresh zeros of the input's shape (contiguous), accumulated in place.
        grad_output, rois = grad_output.contiguous(), rois.contiguous()
        ext = self.kernel if self._ours(grad_output, rois) else self.mmcv_ext
        return ext.roi_align_backward(grad_output, rois, argmax_y, argmax_x, grad_input, **kwargs)

    def __getattr__(self, name: str):   # anything else mmcv's module may look up
        return getattr(self.mmcv_ext, name)


def patch_mmcv_roi_align_cpu(enable: bool | None = None) -> bool:
    """Route CPU RoIAlign to ``ops_roialign._C`` (or with ``enable=False`` back to mmcv's kernel); returns whether
    the multi-threaded kernel is in use afterwards. The dispatcher (contiguous inputs) stays installed either way.

    ``enable=None``: the kernel unless ``INTERNIMAGE_MMCV_ROI_ALIGN=1``. Without the compiled kernel: mmcv's.
    """
    mmcv_roi_align = _mmcv_roi_align_module()

    if enable is None:
        enable = os.environ.get(OPT_OUT_VARIABLE, '0') in ('', '0')
    dispatch = mmcv_roi_align.ext_module
    if not isinstance(dispatch, _RoIAlignDispatch):
        dispatch = mmcv_roi_align.ext_module = _RoIAlignDispatch(dispatch, None)
    dispatch.kernel = load_extension() if enable else None
    return dispatch.kernel is not None


def _mmcv_roi_align_module():
    # The module itself: ``from mmcv.ops import roi_align`` gives the function of the same name. mmcv is imported
    # here only, when the route is installed: the op package imports with torch alone.
    return importlib.import_module('mmcv.ops.roi_align')


def roi_align_kernel_installed() -> bool:
    """Whether CPU RoIAlign runs on ``ops_roialign._C``."""
    ext = _mmcv_roi_align_module().ext_module
    return isinstance(ext, _RoIAlignDispatch) and ext.kernel is not None
