"""The ``DCNv4`` module: the original's constructor, parameters and forward (docs/dcnv4_operator.md).

Importable with torch alone. Parameter names and shapes are the original's, so released FlashInternImage
checkpoints load unchanged.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.init import constant_, xavier_uniform_

from ops_common.modules import DCNv3Layers, add_center_feature_scale, blend_center_feature_scale

from ..functions import DCNv4Function, pack_offset_mask
from ..functions.custom_op import dcnv4 as dcnv4_custom_op
from ..functions.dcnv4_func import EXTENSION


def _dcnv4(*args) -> torch.Tensor:
    """``DCNv4Function.apply``; while torch.compile traces, the custom op where the kernel runs (one graph)."""
    if torch.compiler.is_compiling():
        return EXTENSION.route(args[0], lambda: dcnv4_custom_op(*args), lambda: DCNv4Function.apply(*args))
    return DCNv4Function.apply(*args)


class DCNv4(nn.Module):
    """Deformable convolution v4 over a token sequence ``(N, L, C)`` with ``L = H*W``.

    Any ``group_channels`` works (the kernels take any size); a non-square map needs ``shape``, and the geometry must
    keep the map's size (the offsets are predicted per input pixel). Differences from the original:
    docs/deviations.md.
    """

    def __init__(self, channels: int = 64, kernel_size: int = 3, stride: int = 1, pad: int = 1, dilation: int = 1,
                 group: int = 4, offset_scale: float = 1.0, dw_kernel_size: int | None = None,
                 center_feature_scale: bool = False, remove_center: bool = False, output_bias: bool = True,
                 without_pointwise: bool = False, **kwargs):
        super().__init__()
        if channels % group != 0:
            raise ValueError(f'channels must be divisible by group, but got channels={channels} and group={group}')
        self.offset_scale = offset_scale
        self.channels = channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.dilation = dilation
        self.pad = pad
        self.group = group
        self.group_channels = channels // group
        self.dw_kernel_size = dw_kernel_size
        self.center_feature_scale = center_feature_scale
        self.remove_center = int(remove_center)
        self.without_pointwise = without_pointwise

        self.K = group * (kernel_size * kernel_size - self.remove_center)  # the original's name: points of all groups
        if dw_kernel_size is not None:
            self.offset_mask_dw = nn.Conv2d(channels, channels, dw_kernel_size, stride=1,
                                            padding=(dw_kernel_size - 1) // 2, groups=channels)
        self.offset_mask = nn.Linear(channels, int(math.ceil((self.K * 3) / 8) * 8))
        if not without_pointwise:
            self.value_proj = nn.Linear(channels, channels)
            self.output_proj = nn.Linear(channels, channels, bias=output_bias)
        self._reset_parameters()

        if center_feature_scale:
            add_center_feature_scale(self, group, channels)

    def _reset_parameters(self) -> None:
        constant_(self.offset_mask.weight.data, 0.)
        constant_(self.offset_mask.bias.data, 0.)
        if not self.without_pointwise:
            xavier_uniform_(self.value_proj.weight.data)
            constant_(self.value_proj.bias.data, 0.)
            xavier_uniform_(self.output_proj.weight.data)
            if self.output_proj.bias is not None:
                constant_(self.output_proj.bias.data, 0.)

    def _map_size(self, length: int, shape: tuple[int, int] | None) -> tuple[int, int]:
        if shape is None:
            side = math.isqrt(length)
            if side * side != length:
                raise ValueError(f'DCNv4: input has L={length} tokens, not a square map: pass shape=(H, W)')
            return side, side
        H, W = (int(v) for v in shape)
        if H * W != length:
            raise ValueError(f'DCNv4: shape={tuple(shape)} has {H * W} pixels but the input has L={length} tokens')
        return H, W

    def forward(self, input: torch.Tensor, shape: tuple[int, int] | None = None) -> torch.Tensor:
        """:param input: ``(N, L, C)`` tokens of an ``H x W`` map. :param shape: ``(H, W)`` (square if None).

        :return: ``(N, L, C)``.
        """
        N, L, C = input.shape
        H, W = self._map_size(L, shape)
        def size(dim: int) -> int:
            return (dim + 2 * self.pad - (self.dilation * (self.kernel_size - 1) + 1)) // self.stride + 1
        H_out, W_out = size(H), size(W)
        if (H_out, W_out) != (H, W):
            raise ValueError(
                f'DCNv4: kernel_size={self.kernel_size}, stride={self.stride}, pad={self.pad}, '
                f'dilation={self.dilation} maps {H} x {W} to {H_out} x {W_out}; the module needs a same-size output')

        x = input
        if not self.without_pointwise:
            x = self.value_proj(x)
        x = x.reshape(N, H, W, -1)
        # Offsets and mask come from the un-projected input (through the depthwise conv when there is one).
        if self.dw_kernel_size is not None:
            offset_mask_input = self.offset_mask_dw(input.view(N, H, W, C).permute(0, 3, 1, 2))
            offset_mask_input = offset_mask_input.permute(0, 2, 3, 1).reshape(N, L, C)
        else:
            offset_mask_input = input
        # In the sampled tensor's dtype: under autocast the Linear gives the autocast dtype, while x is the float32
        # input itself when there is no value projection.
        offset_mask = self.offset_mask(offset_mask_input).reshape(N, H, W, -1).type(x.dtype)

        x_proj = x
        x = _dcnv4(
            x, offset_mask, self.kernel_size, self.kernel_size, self.stride, self.stride, self.pad, self.pad,
            self.dilation, self.dilation, self.group, self.group_channels, self.offset_scale, 256,
            self.remove_center)

        if self.center_feature_scale:
            # The gate is computed from the op's output (DCNv3 computes it from the offset branch's input).
            x = blend_center_feature_scale(self, x, x, x_proj)

        x = x.reshape(N, L, -1)
        if not self.without_pointwise:
            x = self.output_proj(x)
        return x


class DCNv3OnDCNv4(DCNv3Layers):
    """DCNv3 (upstream's parameters and state-dict keys) sampling through the DCNv4 operator: InternImage's
    ``use_dcn_v4_op=True``, chosen once where the backbone builds its core op.

    DCNv4 samples as DCNv3 does but takes the mask raw, so the packed offsets and the already-softmaxed mask give
    DCNv3's output (docs/dcnv4_operator.md). The DCNv4 operator's routing applies (kernel, else its PyTorch core).
    """

    def _core(self, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        offset_mask = pack_offset_mask(offset, mask, self.group)
        return _dcnv4(x, offset_mask, *self._geometry(), 256, 0)
