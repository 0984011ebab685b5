"""DCNv4 core: the pure-PyTorch reference and the autograd function over the compiled extension.

Semantics (docs/dcnv4_operator.md): input ``(N, H, W, G*D)`` channels-last; one packed ``offset_mask``
``(N, H_out, W_out, Cpad)`` where group ``g`` owns channels ``[g*3K, (g+1)*3K)``: first the ``2K`` offsets as
interleaved (x, y) pairs, then the ``K`` mask values; ``Cpad`` is ``G*3K`` rounded up to a multiple of 8 and the
channels past ``G*3K`` are padding (never read, zero gradient). ``K = kernel_h*kernel_w - remove_center``; point
``p`` walks the kernel column (x) index outer, row (y) index inner, skipping the centre with ``remove_center``.
The mask is used raw (no softmax). Sampling and the location formula are DCNv3's (docs/dcnv3_operator.md).
"""
from __future__ import annotations

import warnings

import torch

from ops_dcnv3.functions import dcnv3_core_pytorch

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
    for name, tensor in (('input', input), ('offset_mask', offset_mask)):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f'dcnv4: {name} must be a torch.Tensor, got {type(tensor).__name__}')
        if tensor.dim() != 4:
            raise ValueError(f'dcnv4: {name} must be a 4-D channels-last tensor, got shape {tuple(tensor.shape)}')
    if not input.is_floating_point():
        raise ValueError(f'dcnv4: input must be floating point, got {input.dtype}')
    if offset_mask.dtype != input.dtype:
        raise ValueError(f'dcnv4: offset_mask has dtype {offset_mask.dtype} but input has dtype {input.dtype}')
    if offset_mask.device != input.device:
        raise ValueError(f'dcnv4: offset_mask is on {offset_mask.device} but input is on {input.device}')
    for name, value, least in (('kernel_h', kernel_h, 1), ('kernel_w', kernel_w, 1), ('stride_h', stride_h, 1),
                               ('stride_w', stride_w, 1), ('pad_h', pad_h, 0), ('pad_w', pad_w, 0),
                               ('dilation_h', dilation_h, 1), ('dilation_w', dilation_w, 1), ('group', group, 1),
                               ('group_channels', group_channels, 1)):
        if isinstance(value, bool) or int(value) != value or value < least:
            raise ValueError(f'dcnv4: {name} must be an integer >= {least}, got {value!r}')
    if remove_center not in (0, 1, False, True):
        raise ValueError(f'dcnv4: remove_center must be 0/1 or a bool, got {remove_center!r}')
    if remove_center and kernel_h * kernel_w == 1:
        raise ValueError('dcnv4: remove_center needs a kernel with more than one point, got a 1 x 1 kernel')
    N, H, W, C = input.shape
    if C != group * group_channels:
        raise ValueError(
            f'dcnv4: input must be channels-last (N, H, W, C) with C = group * group_channels = {group} * '
            f'{group_channels} = {group * group_channels}, got shape {tuple(input.shape)}')
    H_out = (H + 2 * pad_h - (dilation_h * (kernel_h - 1) + 1)) // stride_h + 1
    W_out = (W + 2 * pad_w - (dilation_w * (kernel_w - 1) + 1)) // stride_w + 1
    if H_out < 1 or W_out < 1:
        raise ValueError(f'dcnv4: input of shape {tuple(input.shape)} is too small for the kernel geometry '
                         f'(output would be {H_out} x {W_out})')
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

    DCNv4 samples exactly as DCNv3 does, so this unpacks offset_mask and runs the DCNv3 reference core (one place for
    the sampling); with ``remove_center`` the centre point is put back with a zero offset and a zero mask, which adds
    nothing to the output and whose gradients are dropped.
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
    return dcnv3_core_pytorch(input, offset.contiguous(), mask.contiguous(), kernel_h, kernel_w, stride_h, stride_w,
                              pad_h, pad_w, dilation_h, dilation_w, group, group_channels, offset_scale)


_extension = None
_extension_error: Exception | None = None
_fallback_warned = False


def load_extension():
    """The compiled ``ops_dcnv4._C`` module, or None where it is not built (imported once, lazily)."""
    global _extension, _extension_error
    if _extension is None and _extension_error is None:
        try:
            from .. import _C
            _extension = _C
        except ImportError as error:  # not built, or built against another torch
            _extension_error = error
    return _extension


def extension_available() -> bool:
    return load_extension() is not None


def _fallback_reason(input: torch.Tensor) -> str | None:
    """Why the compiled kernel cannot run on ``input`` (None when it can)."""
    if torch.onnx.is_in_onnx_export():
        return 'onnx'  # exported graphs use the PyTorch core (GridSample): no custom op for runtimes to provide
    ext = load_extension()
    if ext is None:
        return (f'the compiled DCNv4 extension ops_dcnv4._C is not available ({_extension_error}), so DCNv4 runs '
                'the (slower) pure-PyTorch core. Build it with `make setup` or `cd ops_dcnv4 && sh make.sh`.')
    if input.is_cuda and not ext.with_cuda:
        return ('the compiled DCNv4 extension was built without CUDA, so DCNv4 runs the pure-PyTorch core on CUDA '
                'tensors. Rebuild it where nvcc and a CUDA build of torch are present (`make setup` or '
                '`cd ops_dcnv4 && sh make.sh`).')
    return None


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
        global _fallback_warned
        reason = _fallback_reason(input) if isinstance(input, torch.Tensor) else None
        if reason is not None:
            if reason != 'onnx' and not _fallback_warned:
                warnings.warn(f'ops_dcnv4: {reason}', stacklevel=2)
                _fallback_warned = True
            return dcnv4_core_pytorch(input, offset_mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                                      dilation_h, dilation_w, group, group_channels, offset_scale, remove_center)
        return super().apply(input, offset_mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h,
                             dilation_w, group, group_channels, offset_scale, im2col_step, remove_center)

    @staticmethod
    @torch.amp.custom_fwd(device_type='cuda')
    def forward(ctx, input, offset_mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h,
                dilation_w, group, group_channels, offset_scale, im2col_step, remove_center):
        check_dcnv4_args(input, offset_mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h,
                         dilation_w, group, group_channels, remove_center)
        if isinstance(im2col_step, bool) or int(im2col_step) != im2col_step or im2col_step < 1:
            raise ValueError(f'dcnv4: im2col_step must be an integer >= 1, got {im2col_step!r}')
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
