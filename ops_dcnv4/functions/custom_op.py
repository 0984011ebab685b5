"""DCNv4's compiled kernels as torch custom ops (``torch.ops.internimage.dcnv4_forward`` / ``dcnv4_backward``), so
that ``torch.compile`` traces a FlashInternImage backbone as one graph (dynamo cannot trace into a pybind function).
Same kernels and geometry as :class:`DCNv4Function`, which eager mode keeps using; the ``DCNv4`` modules call
:func:`dcnv4` only while compiling, where the kernel can run (else ``DCNv4Function``'s PyTorch fallback).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .dcnv4_func import check_dcnv4_args, load_extension

__all__ = ['dcnv4']


@torch.library.custom_op('internimage::dcnv4_forward', mutates_args=())
def dcnv4_forward(input: Tensor, offset_mask: Tensor, kernel_h: int, kernel_w: int, stride_h: int, stride_w: int,
                  pad_h: int, pad_w: int, dilation_h: int, dilation_w: int, group: int, group_channels: int,
                  offset_scale: float, im2col_step: int, remove_center: int) -> Tensor:
    check_dcnv4_args(input, offset_mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h,
                     dilation_w, group, group_channels, remove_center)
    return load_extension().dcnv4_forward(input.contiguous(), offset_mask.contiguous(), kernel_h, kernel_w, stride_h,
                                          stride_w, pad_h, pad_w, dilation_h, dilation_w, group, group_channels,
                                          offset_scale, im2col_step, remove_center)


@dcnv4_forward.register_fake
def _(input, offset_mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, group,
      group_channels, offset_scale, im2col_step, remove_center):
    h_out = (input.shape[1] + 2 * pad_h - (dilation_h * (kernel_h - 1) + 1)) // stride_h + 1
    w_out = (input.shape[2] + 2 * pad_w - (dilation_w * (kernel_w - 1) + 1)) // stride_w + 1
    return input.new_empty((input.shape[0], h_out, w_out, group * group_channels))


@torch.library.custom_op('internimage::dcnv4_backward', mutates_args=())
def dcnv4_backward(grad_output: Tensor, input: Tensor, offset_mask: Tensor, kernel_h: int, kernel_w: int,
                   stride_h: int, stride_w: int, pad_h: int, pad_w: int, dilation_h: int, dilation_w: int,
                   group: int, group_channels: int, offset_scale: float, im2col_step: int,
                   remove_center: int) -> tuple[Tensor, Tensor]:
    grad_input, grad_offset_mask = load_extension().dcnv4_backward(
        input.contiguous(), offset_mask.contiguous(), grad_output.contiguous(), kernel_h, kernel_w, stride_h,
        stride_w, pad_h, pad_w, dilation_h, dilation_w, group, group_channels, offset_scale, im2col_step,
        remove_center)
    return grad_input, grad_offset_mask


@dcnv4_backward.register_fake
def _(grad_output, input, offset_mask, *geometry):
    return torch.empty_like(input), torch.empty_like(offset_mask)


def _setup_context(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs[:2])
    ctx.geometry = inputs[2:]


def _backward(ctx, grad_output):
    grads = dcnv4_backward(grad_output, *ctx.saved_tensors, *ctx.geometry)
    return (*grads,) + (None,) * len(ctx.geometry)


dcnv4_forward.register_autograd(_backward, setup_context=_setup_context)


def dcnv4(input: Tensor, offset_mask: Tensor, kernel_h: int, kernel_w: int, stride_h: int, stride_w: int, pad_h: int,
          pad_w: int, dilation_h: int, dilation_w: int, group: int, group_channels: int, offset_scale: float,
          im2col_step: int, remove_center: bool | int = False) -> Tensor:
    """:class:`DCNv4Function`'s arguments and result, through the custom op."""
    return dcnv4_forward(input, offset_mask, int(kernel_h), int(kernel_w), int(stride_h), int(stride_w), int(pad_h),
                         int(pad_w), int(dilation_h), int(dilation_w), int(group), int(group_channels),
                         float(offset_scale), int(im2col_step), int(remove_center))
