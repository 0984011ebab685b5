"""Route mmcv's CPU RoIAlign to the multi-threaded kernel of :mod:`ops_roialign`.

mmcv 1.7's CPU RoIAlign runs on one thread; in Mask R-CNN CPU inference it is the third-largest cost after the
Linear and convolution layers. mmdet's RoI extractors build ``mmcv.ops.RoIAlign`` by name (not through a registry),
so the hook is one level lower: ``RoIAlignFunction`` calls ``ext_module.roi_align_forward/backward`` of
``mmcv.ops.roi_align``, and that module attribute is replaced by a dispatcher that sends CPU float/double tensors to
``ops_roialign._C`` (same arguments, same in-place outputs, same semantics) and everything else (CUDA, half) to
mmcv's own kernels. mmcv's autograd function, its argument checks and its ONNX symbolic are untouched.

Applied at ``import mmcv_custom`` when ``ops_roialign._C`` is built; ``INTERNIMAGE_MMCV_ROI_ALIGN=1`` keeps mmcv's
kernel (e.g. to measure the difference).
"""
from __future__ import annotations

import importlib
import os

import torch

OPT_OUT_VARIABLE = 'INTERNIMAGE_MMCV_ROI_ALIGN'


class _RoIAlignDispatch:
    """Stands in for mmcv's ``ext_module`` inside ``mmcv.ops.roi_align``."""

    def __init__(self, mmcv_ext, kernel) -> None:
        self.mmcv_ext = mmcv_ext
        self.kernel = kernel

    @staticmethod
    def _ours(*tensors: torch.Tensor) -> bool:
        return all(t.device.type == 'cpu' and t.dtype in (torch.float32, torch.float64) for t in tensors)

    def roi_align_forward(self, input, rois, output, argmax_y, argmax_x, **kwargs):
        if self._ours(input, rois) and input.is_contiguous() and rois.is_contiguous():
            return self.kernel.roi_align_forward(input, rois, output, argmax_y, argmax_x, **kwargs)
        return self.mmcv_ext.roi_align_forward(input, rois, output, argmax_y, argmax_x, **kwargs)

    def roi_align_backward(self, grad_output, rois, argmax_y, argmax_x, grad_input, **kwargs):
        if self._ours(grad_output, rois) and rois.is_contiguous() and grad_output.is_contiguous():
            return self.kernel.roi_align_backward(grad_output, rois, argmax_y, argmax_x, grad_input, **kwargs)
        return self.mmcv_ext.roi_align_backward(grad_output, rois, argmax_y, argmax_x, grad_input, **kwargs)

    def __getattr__(self, name: str):   # anything else mmcv's module may look up
        return getattr(self.mmcv_ext, name)


def patch_mmcv_roi_align_cpu(enable: bool | None = None) -> bool:
    """Install (or with ``enable=False`` remove) the dispatcher; returns whether it is installed afterwards.

    ``enable=None``: install unless ``INTERNIMAGE_MMCV_ROI_ALIGN=1``. Without the compiled kernel nothing changes.
    """
    from ops_roialign import load_extension

    mmcv_roi_align = _mmcv_roi_align_module()

    if enable is None:
        enable = os.environ.get(OPT_OUT_VARIABLE, '0') in ('', '0')
    current = mmcv_roi_align.ext_module
    installed = isinstance(current, _RoIAlignDispatch)
    if not enable:
        if installed:
            mmcv_roi_align.ext_module = current.mmcv_ext
        return False
    kernel = load_extension()
    if kernel is None:
        return installed
    if not installed:
        mmcv_roi_align.ext_module = _RoIAlignDispatch(current, kernel)
    return True


def _mmcv_roi_align_module():
    # The module itself: ``from mmcv.ops import roi_align`` gives the function of the same name.
    return importlib.import_module('mmcv.ops.roi_align')


def roi_align_kernel_installed() -> bool:
    return isinstance(_mmcv_roi_align_module().ext_module, _RoIAlignDispatch)
