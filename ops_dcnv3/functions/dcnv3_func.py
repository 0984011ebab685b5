"""DCNv3 core: the pure-PyTorch reference and the autograd function over the compiled extension.

Semantics (docs/dcnv3_operator.md): input ``(N, H, W, G*Gc)`` channels-last, ``offset``
``(N, H_out, W_out, G*K*2)`` with the (x, y) pair of point ``k`` of group ``g`` at ``(g*K + k)*2``,
``mask`` ``(N, H_out, W_out, G*K)``; kernel point ``k = i*kernel_h + j`` with ``i`` the column (x) index as
the outer loop. Sampling is bilinear with zeros outside the image, and ``offset_scale`` scales both the
regular grid displacement and the learned offset.

``mask_softmax=True`` (this project's option, an extra last argument): ``mask`` holds logits and each group's
``K`` points are weighted by their softmax. The compiled kernels fuse it (forward and backward); the PyTorch core
applies ``torch.softmax`` first, the unfused form the kernels are tested against.
"""
from __future__ import annotations

import torch

from ops_common.extension import ExtensionLoader
from ops_common.reference import (
    check_geometry,
    check_im2col_step,
    dcn_sample_pytorch,
    softmax_over_points,
)

__all__ = ['DCNv3Function', 'check_dcnv3_args', 'dcnv3_core_pytorch', 'extension_available',
           'load_extension', 'softmax_over_points']


def check_dcnv3_args(input: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, kernel_h: int, kernel_w: int,
                     stride_h: int, stride_w: int, pad_h: int, pad_w: int, dilation_h: int, dilation_w: int,
                     group: int, group_channels: int) -> tuple[int, int]:
    """Validate the core's arguments; returns (H_out, W_out). Raises one ValueError naming the bad argument."""
    N = input.shape[0] if isinstance(input, torch.Tensor) and input.dim() == 4 else None
    H_out, W_out = check_geometry('dcnv3', input, {'offset': offset, 'mask': mask}, kernel_h, kernel_w, stride_h,
                                  stride_w, pad_h, pad_w, dilation_h, dilation_w, group, group_channels)
    points = group * kernel_h * kernel_w
    for name, tensor, last in (('offset', offset, points * 2), ('mask', mask, points)):
        expected = (N, H_out, W_out, last)
        if tuple(tensor.shape) != expected:
            raise ValueError(f'dcnv3: {name} must have shape {expected} (N, H_out, W_out, ...) for this input and '
                             f'kernel geometry, got {tuple(tensor.shape)}')
    return H_out, W_out


def dcnv3_core_pytorch(input: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor,
                       kernel_h: int, kernel_w: int, stride_h: int, stride_w: int,
                       pad_h: int, pad_w: int, dilation_h: int, dilation_w: int,
                       group: int, group_channels: int, offset_scale: float,
                       mask_softmax: bool = False) -> torch.Tensor:
    """Pure-PyTorch DCNv3 core built on ``F.grid_sample`` (differentiable, any floating dtype).

    Sampling: :func:`ops_common.reference.dcn_sample_pytorch` (docs/deviations.md lists where it differs from
    upstream's).
    """
    if not torch.jit.is_tracing():   # under ONNX export the sizes are traced values: the checks would freeze them
        check_dcnv3_args(input, offset, mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                         dilation_h, dilation_w, group, group_channels)
    return dcn_sample_pytorch(input, offset, mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h,
                              dilation_w, group, group_channels, offset_scale, mask_softmax)


EXTENSION = ExtensionLoader('ops_dcnv3', 'DCNv3')


load_extension = EXTENSION.load  # the compiled module, or None where it is not built (imported once, lazily)
extension_available = EXTENSION.available


class DCNv3Function(torch.autograd.Function):
    """Autograd function over the compiled kernels; upstream's 15 arguments in upstream's order, then the optional
    ``mask_softmax`` (``mask`` holds logits; the softmax over each group's points runs inside the kernels)."""

    @staticmethod
    @torch.amp.custom_fwd(device_type='cuda')
    def forward(ctx, input, offset, mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                dilation_h, dilation_w, group, group_channels, offset_scale, im2col_step, mask_softmax=False):
        ext = load_extension()
        if ext is None:
            raise RuntimeError(EXTENSION.missing_message('dcnv3_core_pytorch'))
        check_dcnv3_args(input, offset, mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                         dilation_h, dilation_w, group, group_channels)
        check_im2col_step('dcnv3', im2col_step)
        ctx.kernel_h, ctx.kernel_w = kernel_h, kernel_w
        ctx.stride_h, ctx.stride_w = stride_h, stride_w
        ctx.pad_h, ctx.pad_w = pad_h, pad_w
        ctx.dilation_h, ctx.dilation_w = dilation_h, dilation_w
        ctx.group, ctx.group_channels = group, group_channels
        ctx.offset_scale, ctx.im2col_step = offset_scale, im2col_step
        ctx.mask_softmax = bool(mask_softmax)
        input, offset, mask = input.contiguous(), offset.contiguous(), mask.contiguous()
        output = ext.dcnv3_forward(
            input, offset, mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
            dilation_h, dilation_w, group, group_channels, offset_scale, ctx.im2col_step, ctx.mask_softmax)
        ctx.save_for_backward(input, offset, mask)
        return output

    @staticmethod
    @torch.autograd.function.once_differentiable
    @torch.amp.custom_bwd(device_type='cuda')
    def backward(ctx, grad_output):
        input, offset, mask = ctx.saved_tensors
        grad_input, grad_offset, grad_mask = load_extension().dcnv3_backward(
            input, offset, mask, ctx.kernel_h, ctx.kernel_w, ctx.stride_h, ctx.stride_w,
            ctx.pad_h, ctx.pad_w, ctx.dilation_h, ctx.dilation_w, ctx.group, ctx.group_channels,
            ctx.offset_scale, grad_output.contiguous(), ctx.im2col_step, ctx.mask_softmax)
        return (grad_input, grad_offset, grad_mask) + (None,) * 13

