"""DCNv3's compiled kernels as torch custom ops (``torch.ops.internimage.dcnv3_forward`` / ``dcnv3_backward``), so
that ``torch.compile`` traces a DCNv3 backbone as one graph: dynamo cannot trace into a pybind function, and the
autograd function around it broke the graph at every DCNv3 layer. Forward, backward (``register_autograd``) and the
shapes for tracing (``register_fake``) are the same kernels and geometry as :class:`DCNv3Function`, which eager mode
keeps using; ``DCNv3``'s kernel route calls :func:`dcnv3` only while compiling.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .dcnv3_func import check_dcnv3_args, load_extension

__all__ = ['dcnv3']


@torch.library.custom_op('internimage::dcnv3_forward', mutates_args=())
def dcnv3_forward(input: Tensor, offset: Tensor, mask: Tensor, kernel_h: int, kernel_w: int, stride_h: int,
                  stride_w: int, pad_h: int, pad_w: int, dilation_h: int, dilation_w: int, group: int,
                  group_channels: int, offset_scale: float, im2col_step: int, mask_softmax: bool) -> Tensor:
    check_dcnv3_args(input, offset, mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h,
                     dilation_w, group, group_channels)
    return load_extension().dcnv3_forward(
        input.contiguous(), offset.contiguous(), mask.contiguous(), kernel_h, kernel_w, stride_h, stride_w, pad_h,
        pad_w, dilation_h, dilation_w, group, group_channels, offset_scale, im2col_step, mask_softmax)


@dcnv3_forward.register_fake
def _(input, offset, mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, group,
      group_channels, offset_scale, im2col_step, mask_softmax):
    h_out = (input.shape[1] + 2 * pad_h - (dilation_h * (kernel_h - 1) + 1)) // stride_h + 1
    w_out = (input.shape[2] + 2 * pad_w - (dilation_w * (kernel_w - 1) + 1)) // stride_w + 1
    return input.new_empty((input.shape[0], h_out, w_out, group * group_channels))


@torch.library.custom_op('internimage::dcnv3_backward', mutates_args=())
def dcnv3_backward(grad_output: Tensor, input: Tensor, offset: Tensor, mask: Tensor, kernel_h: int, kernel_w: int,
                   stride_h: int, stride_w: int, pad_h: int, pad_w: int, dilation_h: int, dilation_w: int,
                   group: int, group_channels: int, offset_scale: float, im2col_step: int,
                   mask_softmax: bool) -> tuple[Tensor, Tensor, Tensor]:
    grad_input, grad_offset, grad_mask = load_extension().dcnv3_backward(
        input.contiguous(), offset.contiguous(), mask.contiguous(), kernel_h, kernel_w, stride_h, stride_w, pad_h,
        pad_w, dilation_h, dilation_w, group, group_channels, offset_scale, grad_output.contiguous(), im2col_step,
        mask_softmax)
    return grad_input, grad_offset, grad_mask


@dcnv3_backward.register_fake
def _(grad_output, input, offset, mask, *geometry):
    return torch.empty_like(input), torch.empty_like(offset), torch.empty_like(mask)


def _setup_context(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs[:3])
    ctx.geometry = inputs[3:]


def _backward(ctx, grad_output):
    grads = dcnv3_backward(grad_output, *ctx.saved_tensors, *ctx.geometry)
    return (*grads,) + (None,) * len(ctx.geometry)


dcnv3_forward.register_autograd(_backward, setup_context=_setup_context)


def dcnv3(input: Tensor, offset: Tensor, mask: Tensor, kernel_h: int, kernel_w: int, stride_h: int, stride_w: int,
          pad_h: int, pad_w: int, dilation_h: int, dilation_w: int, group: int, group_channels: int,
          offset_scale: float, im2col_step: int, mask_softmax: bool = False) -> Tensor:
    """:class:`DCNv3Function`'s arguments and result, through the custom op."""
    return dcnv3_forward(input, offset, mask, int(kernel_h), int(kernel_w), int(stride_h), int(stride_w), int(pad_h),
                         int(pad_w), int(dilation_h), int(dilation_w), int(group), int(group_channels),
                         float(offset_scale), int(im2col_step), bool(mask_softmax))
