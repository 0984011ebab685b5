"""What the DCN modules share: norm and activation builders, the centre-feature-scale gate, and the DCNv3 module's
layers around a core a subclass supplies (:class:`DCNv3Layers`).

Parameter names and shapes are upstream's, so released checkpoints load unchanged (docs/checkpoints.md).
"""
from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.nn.init import constant_, xavier_uniform_

from .reference import softmax_over_points

__all__ = ['CenterFeatureScaleModule', 'DCNv3Layers', 'add_center_feature_scale', 'blend_center_feature_scale',
           'build_act_layer', 'build_norm_layer', 'to_channels_first', 'to_channels_last']


class to_channels_first(nn.Module):  # noqa: N801  (upstream's name; parameter-free)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2)


class to_channels_last(nn.Module):  # noqa: N801

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)


def build_norm_layer(dim: int, norm_layer: str, in_format: str = 'channels_last',
                     out_format: str = 'channels_last', eps: float = 1e-6) -> nn.Sequential:
    """Norm as an ``nn.Sequential`` with permutes around it.

    The permute modules are part of the Sequential on purpose: they shift its indices and therefore the
    state-dict keys (``norm1.1.weight`` after a permute, ``norm.0.weight`` without), as in the released
    checkpoints.
    """
    layers = []
    if norm_layer == 'BN':
        if in_format == 'channels_last':
            layers.append(to_channels_first())
        layers.append(nn.BatchNorm2d(dim))
        if out_format == 'channels_last':
            layers.append(to_channels_last())
    elif norm_layer == 'LN':
        if in_format == 'channels_first':
            layers.append(to_channels_last())
        layers.append(nn.LayerNorm(dim, eps=eps))
        if out_format == 'channels_first':
            layers.append(to_channels_first())
    else:
        raise NotImplementedError(f"norm_layer must be 'LN' or 'BN', got {norm_layer!r}")
    return nn.Sequential(*layers)


def build_act_layer(act_layer: str) -> nn.Module:
    if act_layer == 'ReLU':
        return nn.ReLU(inplace=True)
    if act_layer == 'SiLU':
        return nn.SiLU(inplace=True)
    if act_layer == 'GELU':
        return nn.GELU()
    raise NotImplementedError(f"act_layer must be 'ReLU', 'SiLU' or 'GELU', got {act_layer!r}")


def _is_power_of_2(n: int) -> bool:
    return n > 0 and (n & (n - 1)) == 0


class CenterFeatureScaleModule(nn.Module):
    """Per-group gate ``sigmoid(x W^T + b)`` (parameter-free: the weights are owned by the DCNv3 module)."""

    def forward(self, query: torch.Tensor, center_feature_scale_proj_weight: torch.Tensor,
                center_feature_scale_proj_bias: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(
            query, weight=center_feature_scale_proj_weight, bias=center_feature_scale_proj_bias).sigmoid()


def add_center_feature_scale(module: nn.Module, group: int, channels: int) -> None:
    """The centre-feature-scale gate of a DCN module: its zero-initialised projection (upstream's parameter names)
    and the parameter-free module applying it."""
    module.center_feature_scale_proj_weight = nn.Parameter(torch.zeros((group, channels), dtype=torch.float))
    module.center_feature_scale_proj_bias = nn.Parameter(torch.zeros(group, dtype=torch.float))
    module.center_feature_scale_module = CenterFeatureScaleModule()


def blend_center_feature_scale(module: nn.Module, gate_input: torch.Tensor, x: torch.Tensor,
                               x_proj: torch.Tensor) -> torch.Tensor:
    """``x * (1 - gate) + x_proj * gate`` with the per-group gate of ``gate_input`` spread over each group's
    channels ((N, H, W, G) -> (N, H, W, G * group_channels))."""
    gate = module.center_feature_scale_module(
        gate_input, module.center_feature_scale_proj_weight, module.center_feature_scale_proj_bias)
    gate = gate[..., None].repeat(1, 1, 1, 1, module.channels // module.group).flatten(-2)
    return x * (1 - gate) + x_proj * gate


class DCNv3Layers(nn.Module):
    """The DCNv3 module's layers and forward (upstream's parameter names and shapes), around a sampling core that
    a subclass supplies in ``_core(x, offset, mask)`` (mask: softmaxed weights) or, to take the mask logits
    itself, in ``_sample(x, offset, mask_logits)``: ``ops_dcnv3.DCNv3`` / ``DCNv3_pytorch`` and
    ``ops_dcnv4.DCNv3OnDCNv4`` are this module with their cores."""

    def __init__(self, channels: int = 64, kernel_size: int = 3, dw_kernel_size: int | None = None,
                 stride: int = 1, pad: int = 1, dilation: int = 1, group: int = 4,
                 offset_scale: float = 1.0, act_layer: str = 'GELU', norm_layer: str = 'LN',
                 center_feature_scale: bool = False):
        super().__init__()
        if channels % group != 0:
            raise ValueError(f'channels must be divisible by group, but got channels={channels} and group={group}')
        _d_per_group = channels // group
        dw_kernel_size = dw_kernel_size if dw_kernel_size is not None else kernel_size
        if not _is_power_of_2(_d_per_group):
            warnings.warn(
                "You'd better set channels in DCNv3 to make the dimension of each attention head a power of 2 "
                'which is more efficient in our CUDA implementation.', stacklevel=2)

        self.offset_scale = offset_scale
        self.channels = channels
        self.kernel_size = kernel_size
        self.dw_kernel_size = dw_kernel_size
        self.stride = stride
        self.dilation = dilation
        self.pad = pad
        self.group = group
        self.group_channels = channels // group
        self.center_feature_scale = center_feature_scale

        self.dw_conv = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=dw_kernel_size, stride=1,
                      padding=(dw_kernel_size - 1) // 2, groups=channels),
            build_norm_layer(channels, norm_layer, 'channels_first', 'channels_last'),
            build_act_layer(act_layer))
        self.offset = nn.Linear(channels, group * kernel_size * kernel_size * 2)
        self.mask = nn.Linear(channels, group * kernel_size * kernel_size)
        self.input_proj = nn.Linear(channels, channels)
        self.output_proj = nn.Linear(channels, channels)
        self._reset_parameters()

        if center_feature_scale:
            add_center_feature_scale(self, group, channels)

    def _reset_parameters(self) -> None:
        constant_(self.offset.weight.data, 0.)
        constant_(self.offset.bias.data, 0.)
        constant_(self.mask.weight.data, 0.)
        constant_(self.mask.bias.data, 0.)
        xavier_uniform_(self.input_proj.weight.data)
        constant_(self.input_proj.bias.data, 0.)
        xavier_uniform_(self.output_proj.weight.data)
        constant_(self.output_proj.bias.data, 0.)

    def _sample(self, x: torch.Tensor, offset: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
        """The core on the mask logits: softmax over each group's points, then ``_core`` (the compiled module fuses
        the two)."""
        return self._core(x, offset, softmax_over_points(mask_logits, self.group))

    def _core(self, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f'{type(self).__name__} supplies no sampling core (_core)')

    def _geometry(self) -> tuple:
        """The core's geometry arguments, kernel_h .. offset_scale (square kernel, same stride/pad/dilation)."""
        return (self.kernel_size, self.kernel_size, self.stride, self.stride, self.pad, self.pad, self.dilation,
                self.dilation, self.group, self.group_channels, self.offset_scale)

    def _check_input(self, input: torch.Tensor) -> None:
        """One line naming the expected layout instead of a shape error from the first Linear."""
        if isinstance(input, torch.Tensor) and input.dim() == 4 and input.shape[-1] == self.channels:
            return
        shape = tuple(input.shape) if isinstance(input, torch.Tensor) else type(input).__name__
        hint = ''
        if isinstance(input, torch.Tensor) and input.dim() == 4 and input.shape[1] == self.channels:
            hint = ': this looks channels-first (N, C, H, W); pass input.permute(0, 2, 3, 1)'
        raise ValueError(f'{type(self).__name__}: input must be channels-last (N, H, W, C) with C = channels = '
                         f'{self.channels}, got shape {shape}{hint}')

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """:param input: (N, H, W, C) channels-last. :return: (N, H, W, C)."""
        if not torch.jit.is_tracing():  # traced sizes are graph values in an export: nothing to check there
            self._check_input(input)
        N, H, W, _ = input.shape
        x = self.input_proj(input)
        x_proj = x
        # Offsets and masks are predicted from the un-projected input; sampling happens on the projection.
        x1 = self.dw_conv(input.permute(0, 3, 1, 2))
        # Offsets and mask logits in the sampled tensor's dtype: under autocast the projections' output dtypes need
        # not match x's (e.g. fp32 weights outside autocast regions, or a float32 op inside one).
        offset = self.offset(x1).type(x.dtype)
        mask_logits = self.mask(x1).type(x.dtype)

        x = self._sample(x, offset, mask_logits)
        if self.center_feature_scale:
            x = blend_center_feature_scale(self, x1, x, x_proj)
        return self.output_proj(x)


