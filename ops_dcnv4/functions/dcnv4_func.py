"""DCNv4 core: the pure-PyTorch reference and the autograd function over the compiled extension.

Semantics (docs/dcnv4_operator.md): input ``(N, H, W, G*D)`` channels-last; one packed ``offset_mask``
``(N, H_out, W_out, Cpad)`` where group ``g`` owns channels ``[g*3K, (g+1)*3K)``: first the ``2K`` offsets as
interleaved (x, y) pairs, then the ``K`` mask values; ``Cpad`` is ``G*3K`` rounded up to a multiple of 8 and the
channels past ``G*3K`` are padding (never read, zero gradient). ``K = kernel_h*kernel_w - remove_center``; point
``p`` walks the kernel column (x) index outer, row (y) index inner, skipping the centre with ``remove_center``.
The mask is used raw (no softmax). Sampling and the location formula are DCNv3's (docs/dcnv3_operator.md).
"""
from __future__ import annotations

import torch

from ops_common.extension import ExtensionLoader
from ops_common.reference import check_geometry, check_im2col_step, dcn_sample_pytorch

__all__ = ['DCNv4Function', 'check_dcnv4_args', 'dcnv4_core_pytorch', 'extension_available', 'load_extension',
           'offset_mask_channels', 'pack_offset_mask', 'unpack_offset_mask']


def offset_mask_channels(group: int, kernel_h: int, kernel_w: int, remove_center: bool | int = False) -> int:
    """Channels of the packed offset_mask: ``group * 3K`` rounded up to a multiple of 8."""
    points = kernel_h * kernel_w - int(remove_center)
    return (group * points * 3 + 7) // 8 * 8


def _centre_index(kernel_h: int, kernel_w: int) -> int:
    """Index, in the full DCNv3 point order (i * kernel_h + j), of the centre point (kernel_w // 2, kernel_h // 2)."""
    return (kernel_w // 2) * kernel_h + kernel_h // 2


def check_dcnv4_args(input: torch.Tensor, offset_mask: torch.Tensor, kernel_h: int, kernel_w: int, stride_h: int,
                     stride_w: int, pad_h: int, pad_w: int, dilation_h: int, dilation_w: int, group: int,
                     group_channels: int, remove_center: bool | int = False) -> tuple[int, int]:
    """Validate the core's arguments; returns (H_out, W_out). Raises one ValueError naming the bad argument."""
    if remove_center not in (0, 1, False, True):
        raise ValueError(f'dcnv4: remove_center must be 0/1 or a bool, got {remove_center!r}')
    H_out, W_out = check_geometry('dcnv4', input, {'offset_mask': offset_mask}, kernel_h, kernel_w, stride_h,
                                  stride_w, pad_h, pad_w, dilation_h, dilation_w, group, group_channels,
                                  refuse_bool=True)
    if remove_center and kernel_h * kernel_w == 1:
        raise ValueError('dcnv4: remove_center needs a kernel with more than one point, got a 1 x 1 kernel')
    N = input.shape[0]
    expected = (N, H_out, W_out, offset_mask_channels(group, kernel_h, kernel_w, remove_center))
    if tuple(offset_mask.shape) != expected:
        points = kernel_h * kernel_w - int(remove_center)
        raise ValueError(
            f'dcnv4: offset_mask must have shape {expected} (N, H_out, W_out, group * 3K = {group} * 3 * {points} '
            f'rounded up to a multiple of 8) for this input and kernel geometry, got {tuple(offset_mask.shape)}')
    return H_out, W_out


def unpack_offset_mask(offset_mask: torch.Tensor, group: int, points: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a packed offset_mask into DCNv3-layout ``offset (..., G*K*2)`` and ``mask (..., G*K)``.

    The padding channels are sliced away, so they are never read and get a zero gradient through autograd.
    """
    lead = offset_mask.shape[:-1]
    per_group = offset_mask[..., :group * points * 3].reshape(*lead, group, points * 3)
    offset = per_group[..., :points * 2].reshape(*lead, group * points * 2)
    mask = per_group[..., points * 2:].reshape(*lead, group * points)
    return offset, mask


def pack_offset_mask(offset: torch.Tensor, mask: torch.Tensor, group: int) -> torch.Tensor:
    """Pack DCNv3-layout ``offset (..., G*K*2)`` and ``mask (..., G*K)`` into DCNv4's zero-padded offset_mask.

    Feeding the packed result of a DCNv3 module's offsets and *softmaxed* mask to DCNv4 computes DCNv3's output.
    """
    lead = offset.shape[:-1]
    points = mask.shape[-1] // group
    packed = torch.cat((offset.reshape(*lead, group, points * 2), mask.reshape(*lead, group, points)), -1)
    padding = (group * points * 3 + 7) // 8 * 8 - group * points * 3
    packed = packed.reshape(*lead, group * points * 3)
    return torch.nn.functional.pad(packed, (0, padding)) if padding else packed


def dcnv4_core_pytorch(input: torch.Tensor, offset_mask: torch.Tensor, kernel_h: int, kernel_w: int,
                       stride_h: int, stride_w: int, pad_h: int, pad_w: int, dilation_h: int, dilation_w: int,
                       group: int, group_channels: int, offset_scale: float,
                       remove_center: bool | int = False) -> torch.Tensor:
    """Pure-PyTorch DCNv4 core (differentiable, any floating dtype, any kernel size, ``remove_center``).

    DCNv4 samples exactly as DCNv3 does, so this unpacks offset_mask and runs ops_common's reference sampling (one
    place for the sampling); with ``remove_center`` the centre point is put back with a zero offset and a zero
    mask, which adds nothing to the output and whose gradients are dropped.
    """
    if not torch.jit.is_tracing():  # under ONNX export the sizes are traced values: the checks would freeze them
        check_dcnv4_args(input, offset_mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h,
                         dilation_w, group, group_channels, remove_center)
    points = kernel_h * kernel_w - int(remove_center)
    offset, mask = unpack_offset_mask(offset_mask, group, points)
    if remove_center:
        lead = offset.shape[:-1]
        centre = _centre_index(kernel_h, kernel_w)
        offset = offset.reshape(*lead, group, points, 2)
        mask = mask.reshape(*lead, group, points)
        offset = torch.cat((offset[..., :centre, :], offset.new_zeros(*lead, group, 1, 2), offset[..., centre:, :]),
                           -2).reshape(*lead, group * (points + 1) * 2)
        mask = torch.cat((mask[..., :centre], mask.new_zeros(*lead, group, 1), mask[..., centre:]),
                         -1).reshape(*lead, group * (points + 1))
    return dcn_sample_pytorch(input, offset.contiguous(), mask.contiguous(), kernel_h, kernel_w, stride_h, stride_w,
                              pad_h, pad_w, dilation_h, dilation_w, group, group_channels, offset_scale)


EXTENSION = ExtensionLoader('ops_dcnv4', 'DCNv4')


load_extension = EXTENSION.load  # the compiled module, or None where it is not built (imported once, lazily)
extension_available = EXTENSION.available


class DCNv4Function(torch.autograd.Function):
    """Autograd function over the compiled kernels; the original's 15 arguments in the original's order.

    ``DCNv4Function.apply(input, offset_mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h,
    dilation_w, group, group_channels, offset_scale, im2col_step, remove_center)`` -> ``(N, H_out, W_out, G*D)``.
    Where the extension cannot run (not built, or built without CUDA for a CUDA tensor) ``apply`` runs
    :func:`dcnv4_core_pytorch` instead and warns once.
    """

    @classmethod
    def apply(cls, input, offset_mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h,
              dilation_w, group, group_channels, offset_scale, im2col_step, remove_center):
        args = (input, offset_mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w,
                group, group_channels, offset_scale)
        return EXTENSION.route(input, lambda: super(DCNv4Function, cls).apply(*args, im2col_step, remove_center),
                               lambda: dcnv4_core_pytorch(*args, remove_center))

    @staticmethod
    @torch.amp.custom_fwd(device_type='cuda')
    def forward(ctx, input, offset_mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h,
                dilation_w, group, group_channels, offset_scale, im2col_step, remove_center):
        check_dcnv4_args(input, offset_mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h,
                         dilation_w, group, group_channels, remove_center)
        check_im2col_step('dcnv4', im2col_step, refuse_bool=True)
        ctx.geometry = (kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, group,
                        group_channels, float(offset_scale), int(im2col_step), int(remove_center))
        input, offset_mask = input.contiguous(), offset_mask.contiguous()
        output = load_extension().dcnv4_forward(input, offset_mask, *ctx.geometry)
        ctx.save_for_backward(input, offset_mask)
        return output

    @staticmethod
    @torch.autograd.function.once_differentiable
    @torch.amp.custom_bwd(device_type='cuda')
    def backward(ctx, grad_output):
        input, offset_mask = ctx.saved_tensors
        grad_input, grad_offset_mask = load_extension().dcnv4_backward(
            input, offset_mask, grad_output.contiguous(), *ctx.geometry)
        return (grad_input, grad_offset_mask) + (None,) * 13
