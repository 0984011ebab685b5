"""InternImage backbone (detection version), checkpoint-compatible with the released models.

Every block works channels-last ``(N, H, W, C)``: the norms and the linear layers act on the last axis, so the
only layout changes are the ones the convolutions need (stem, depth-wise conv inside DCNv3, downsampling) and
the final NCHW outputs. Module and parameter names reproduce upstream's state-dict keys (docs/checkpoints.md).

Plain PyTorch: this file imports with torch and timm alone (mmcv/mmdet only lazily, for their checkpoint loader and
logger when present), so the backbone serves detectron2, HF or plain PyTorch code too. ``backbones/__init__.py``
registers it into mmdet's BACKBONES when mmdet is installed. Construction timm-style::

    model = InternImage.from_variant('T', core_op='DCNv3', out_indices=(1, 2, 3))
"""
from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import torch
import torch.utils.checkpoint as checkpoint
from timm.layers import DropPath, trunc_normal_
from torch import nn

from ops_common.flops import dcn_core_flops
from ops_common.modules import build_act_layer, build_norm_layer
from ops_dcnv3.modules import DCNv3, DCNv3_pytorch
from ops_dcnv4.modules import DCNv3OnDCNv4

# Hyper-parameters of the released detection backbones (docs/checkpoints.md, "Backbone variants"). All use
# mlp_ratio 4.0, LN, GELU, kernel 3 and linear drop-path; `drop_path_rate` is the value of the 1x configs (XL uses
# 0.6 in its 3x config).
# InternImage.from_variant builds from this table; configs spell the same numbers out, as the originals do.
INTERN_IMAGE_VARIANTS: dict[str, dict] = {
    'T': dict(channels=64, depths=[4, 4, 18, 4], groups=[4, 8, 16, 32], layer_scale=1.0, offset_scale=1.0,
              post_norm=False, drop_path_rate=0.2),
    'S': dict(channels=80, depths=[4, 4, 21, 4], groups=[5, 10, 20, 40], layer_scale=1.0, offset_scale=1.0,
              post_norm=True, drop_path_rate=0.3),
    'B': dict(channels=112, depths=[4, 4, 21, 4], groups=[7, 14, 28, 56], layer_scale=1.0, offset_scale=1.0,
              post_norm=True, drop_path_rate=0.4),
    'L': dict(channels=160, depths=[5, 5, 22, 5], groups=[10, 20, 40, 80], layer_scale=1.0, offset_scale=2.0,
              post_norm=True, drop_path_rate=0.4),
    'XL': dict(channels=192, depths=[5, 5, 24, 5], groups=[12, 24, 48, 96], layer_scale=1.0, offset_scale=2.0,
               post_norm=True, drop_path_rate=0.4),
    'H': dict(channels=320, depths=[6, 6, 32, 6], groups=[10, 20, 40, 80], layer_scale=None, offset_scale=1.0,
              post_norm=False, res_post_norm=True, dw_kernel_size=5, level2_post_norm=True,
              level2_post_norm_block_ids=[5, 11, 17, 23, 29], center_feature_scale=True, drop_path_rate=0.5),
    'G': dict(channels=512, depths=[2, 2, 48, 4], groups=[16, 32, 64, 128], layer_scale=None, offset_scale=1.0,
              post_norm=True, dw_kernel_size=5, level2_post_norm=True,
              level2_post_norm_block_ids=[5, 11, 17, 23, 29, 35, 41, 47], center_feature_scale=True,
              drop_path_rate=0.5),
}

CORE_OPS: dict[str, type[nn.Module]] = {'DCNv3': DCNv3, 'DCNv3_pytorch': DCNv3_pytorch}
NORM_LAYERS = ('LN', 'BN')
ACT_LAYERS = ('ReLU', 'SiLU', 'GELU')

# Keys that upstream's **kwargs swallowed and that only mean something to the classification model.
IGNORED_CLASSIFICATION_KWARGS = ('use_clip_projector', 'remove_center', 'cls_scale', 'num_classes')

# Parameters of the classification checkpoints' heads (T..XL: conv_head/head; H/G: the attention-pooling
# projector and its heads). Dropped silently when such a checkpoint initialises the backbone.
CLASSIFIER_HEAD_PREFIXES = ('conv_head.', 'head.', 'dcnv3_head_x4.', 'dcnv3_head_x3.', 'clip_projector.',
                            'fc_norm.')


def _init_linear_and_layernorm(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=.02)
        if module.bias is not None:
            nn.init.constant_(module.bias, 0)
    elif isinstance(module, nn.LayerNorm):
        nn.init.constant_(module.weight, 1.0)
        nn.init.constant_(module.bias, 0)


def drop_path_rates(depths: Sequence[int], drop_path_rate: float, drop_path_type: str) -> list[float]:
    """Per-block stochastic-depth rates, computed in Python (no tensors, so it works on the meta device)."""
    total = sum(depths)
    if drop_path_type == 'uniform':
        return [float(drop_path_rate)] * total
    if total == 1:
        return [0.0]
    return [drop_path_rate * i / (total - 1) for i in range(total)]


class StemLayer(nn.Module):
    """Two stride-2 3x3 convs: NCHW image in, channels-last features at stride 4 out."""

    def __init__(self, in_chans: int = 3, out_chans: int = 96, act_layer: str = 'GELU', norm_layer: str = 'BN'):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, out_chans // 2, kernel_size=3, stride=2, padding=1)
        self.norm1 = build_norm_layer(out_chans // 2, norm_layer, 'channels_first', 'channels_first')
        self.act = build_act_layer(act_layer)
        self.conv2 = nn.Conv2d(out_chans // 2, out_chans, kernel_size=3, stride=2, padding=1)
        self.norm2 = build_norm_layer(out_chans, norm_layer, 'channels_first', 'channels_last')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Channels-last memory (same NCHW shape) makes the convs write NHWC, so the LN permutes are free views
        # instead of copies of the large stride-2 feature map.
        x = x.contiguous(memory_format=torch.channels_last)
        x = self.act(self.norm1(self.conv1(x)))
        return self.norm2(self.conv2(x))


class DownsampleLayer(nn.Module):
    """Stride-2 3x3 conv doubling the channels; channels-last in and out."""

    def __init__(self, channels: int, norm_layer: str = 'LN'):
        super().__init__()
        self.conv = nn.Conv2d(channels, 2 * channels, kernel_size=3, stride=2, padding=1, bias=False)
        self.norm = build_norm_layer(2 * channels, norm_layer, 'channels_first', 'channels_last')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The permuted view has channels-last strides, so the conv runs in channels-last memory format and
        # the norm's permute back is again a free view.
        return self.norm(self.conv(x.permute(0, 3, 1, 2)))


class MLPLayer(nn.Module):
    """fc1 -> act -> fc2; ``fc2_bias=False`` is FlashInternImage T/S/B's bias-free fc2."""

    def __init__(self, in_features: int, hidden_features: int, act_layer: str = 'GELU', drop: float = 0.,
                 fc2_bias: bool = True):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = build_act_layer(act_layer)
        self.fc2 = nn.Linear(hidden_features, in_features, bias=fc2_bias)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc1(x)
        if not torch.is_grad_enabled() and type(self.act) is nn.GELU and self.act.approximate == 'none':
            # Inference: GELU in place on the fresh fc1 output saves allocating (and page-faulting) the
            # largest activation of the block; autograd needs the input, so training keeps nn.GELU.
            x = torch.ops.aten.gelu_(x)
        else:
            x = self.act(x)
        return self.drop(self.fc2(self.drop(x)))


class InternImageLayer(nn.Module):
    """One block: DCNv3 token mixer and MLP, each in a residual branch (variants: docs/checkpoints.md)."""

    def __init__(self, core_op: type[nn.Module], channels: int, groups: int, mlp_ratio: float = 4., drop: float = 0.,
                 drop_path: float = 0., act_layer: str = 'GELU', norm_layer: str = 'LN',
                 post_norm: bool = False, layer_scale: float | None = None, offset_scale: float = 1.0,
                 with_cp: bool = False, dw_kernel_size: int | None = None, res_post_norm: bool = False,
                 center_feature_scale: bool = False, mlp_fc2_bias: bool = True, core_kwargs: dict | None = None):
        super().__init__()
        self.channels = channels
        self.groups = groups
        self.mlp_ratio = mlp_ratio
        self.with_cp = with_cp
        self.post_norm = post_norm
        self.res_post_norm = res_post_norm
        self.layer_scale = layer_scale is not None
        if self.layer_scale:
            self.gamma1 = nn.Parameter(layer_scale * torch.ones(channels))
            self.gamma2 = nn.Parameter(layer_scale * torch.ones(channels))

        # The block's own norms are LayerNorms whatever `norm_layer` says (it only reaches the convolutions).
        self.norm1 = build_norm_layer(channels, 'LN')
        self.dcn = core_op(
            channels=channels, kernel_size=3, stride=1, pad=1, dilation=1, group=groups, offset_scale=offset_scale,
            act_layer=act_layer, norm_layer=norm_layer, dw_kernel_size=dw_kernel_size,
            center_feature_scale=center_feature_scale, **(core_kwargs or {}))
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2 = build_norm_layer(channels, 'LN')
        self.mlp = MLPLayer(channels, int(channels * mlp_ratio), act_layer=act_layer, drop=drop,
                            fc2_bias=mlp_fc2_bias)
        if res_post_norm:
            self.res_post_norm1 = build_norm_layer(channels, 'LN')
            self.res_post_norm2 = build_norm_layer(channels, 'LN')

    def _scaled_residual(self, x: torch.Tensor, gamma: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        """x + drop_path(gamma * branch); one fused pass when drop-path is inactive."""
        if self.training and not isinstance(self.drop_path, nn.Identity):
            return x + self.drop_path(gamma * branch)
        return torch.addcmul(x, gamma, branch)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layer_scale:
            # With layer scale, res_post_norm modules (if any) exist but are unused, as upstream.
            if self.post_norm:
                x = self._scaled_residual(x, self.gamma1, self.norm1(self.dcn(x)))
                return self._scaled_residual(x, self.gamma2, self.norm2(self.mlp(x)))
            x = self._scaled_residual(x, self.gamma1, self.dcn(self.norm1(x)))
            return self._scaled_residual(x, self.gamma2, self.mlp(self.norm2(x)))
        if self.post_norm:
            x = x + self.drop_path(self.norm1(self.dcn(x)))
            return x + self.drop_path(self.norm2(self.mlp(x)))
        if self.res_post_norm:
            x = x + self.drop_path(self.res_post_norm1(self.dcn(self.norm1(x))))
            return x + self.drop_path(self.res_post_norm2(self.mlp(self.norm2(x))))
        x = x + self.drop_path(self.dcn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and torch.is_grad_enabled():
            # Non-reentrant checkpointing: gradients reach the parameters even when x itself needs none.
            return checkpoint.checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)


class InternImageBlock(nn.Module):
    """One stage: its blocks, the optional stage norm and extra post-norms, and the optional downsampling."""

    def __init__(self, core_op: type[nn.Module], channels: int, depth: int, groups: int, downsample: bool = True,
                 mlp_ratio: float = 4., drop: float = 0., drop_path: float | Sequence[float] = 0.,
                 act_layer: str = 'GELU', norm_layer: str = 'LN', post_norm: bool = False,
                 offset_scale: float = 1.0, layer_scale: float | None = None, with_cp: bool = False,
                 dw_kernel_size: int | None = None, post_norm_block_ids: Sequence[int] | None = None,
                 res_post_norm: bool = False, center_feature_scale: bool = False,
                 mlp_fc2_bias: bool = True, core_kwargs: dict | None = None):
        super().__init__()
        self.channels = channels
        self.depth = depth
        self.post_norm = post_norm
        self.center_feature_scale = center_feature_scale
        rates = list(drop_path) if isinstance(drop_path, (list, tuple)) else [drop_path] * depth
        self.blocks = nn.ModuleList([
            InternImageLayer(
                core_op=core_op, channels=channels, groups=groups, mlp_ratio=mlp_ratio, drop=drop,
                drop_path=rates[i], act_layer=act_layer, norm_layer=norm_layer, post_norm=post_norm,
                layer_scale=layer_scale, offset_scale=offset_scale, with_cp=with_cp, dw_kernel_size=dw_kernel_size,
                res_post_norm=res_post_norm, center_feature_scale=center_feature_scale,
                mlp_fc2_bias=mlp_fc2_bias, core_kwargs=core_kwargs)
            for i in range(depth)])
        if not post_norm or center_feature_scale:
            self.norm = build_norm_layer(channels, 'LN')
        self.post_norm_block_ids = list(post_norm_block_ids) if post_norm_block_ids is not None else None
        if self.post_norm_block_ids is not None:
            self.post_norms = nn.ModuleList(
                [build_norm_layer(channels, 'LN', eps=1e-6) for _ in self.post_norm_block_ids])
        self.downsample = DownsampleLayer(channels=channels, norm_layer=norm_layer) if downsample else None

    def forward(self, x: torch.Tensor, return_wo_downsample: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if self.post_norm_block_ids is not None and i in self.post_norm_block_ids:
                x = self.post_norms[self.post_norm_block_ids.index(i)](x)
        if not self.post_norm or self.center_feature_scale:
            x = self.norm(x)
        x_ = x
        if self.downsample is not None:
            x = self.downsample(x)
        if return_wo_downsample:
            return x, x_
        return x


def _check_choice(name: str, value, choices: Sequence, owner: str = 'InternImage') -> None:
    if value not in choices:
        raise ValueError(f'{owner}: {name} must be one of {list(choices)}, got {value!r}')


class InternImage(nn.Module):
    """InternImage backbone returning the NCHW features of the stages in ``out_indices`` (strides 4..32).

    Arguments and defaults are upstream's; ``INTERN_IMAGE_VARIANTS`` holds the released sizes and
    :meth:`from_variant` builds one of them.
    Differences from upstream: unknown keyword arguments are an error (the classification-only ones upstream's
    configs pass are accepted with a warning); ``core_op='DCNv3_pytorch'`` works; ``frozen_stages >= 0`` also
    freezes the stem; ``train()`` returns ``self``; construction works on the meta device.
    Subclasses swap ``core_ops`` and add block options (``_block_options``: FlashInternImage's bias switches).
    """

    core_ops: dict[str, type[nn.Module]] = CORE_OPS
    variants: dict[str, dict] = INTERN_IMAGE_VARIANTS  # the released sizes from_variant builds
    # checkpoint entries holding the weights, in order of preference (FlashInternImage adds its EMA weights)
    checkpoint_wrapper_keys: tuple[str, ...] = ('state_dict', 'model')

    def __init__(self,
                 core_op: str = 'DCNv3',
                 channels: int = 64,
                 depths: Sequence[int] = (3, 4, 18, 5),
                 groups: Sequence[int] = (3, 6, 12, 24),
                 mlp_ratio: float = 4.,
                 drop_rate: float = 0.,
                 drop_path_rate: float = 0.2,
                 drop_path_type: str = 'linear',
                 act_layer: str = 'GELU',
                 norm_layer: str = 'LN',
                 layer_scale: float | None = None,
                 offset_scale: float = 1.0,
                 post_norm: bool = False,
                 with_cp: bool = False,
                 dw_kernel_size: int | None = None,
                 level2_post_norm: bool = False,
                 level2_post_norm_block_ids: Sequence[int] | None = None,
                 res_post_norm: bool = False,
                 center_feature_scale: bool = False,
                 use_dcn_v4_op: bool = False,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 init_cfg: dict | None = None,
                 **kwargs):
        super().__init__()
        block_options = self._block_options(kwargs)
        self._check_kwargs(kwargs)
        depths, groups = list(depths), list(groups)
        self._check_args(core_op, channels, depths, groups, drop_path_type, act_layer, norm_layer, out_indices,
                         frozen_stages, level2_post_norm, level2_post_norm_block_ids, init_cfg)
        self.core_op = core_op
        self.num_levels = len(depths)
        self.depths = depths
        self.channels = channels
        self.num_features = int(channels * 2 ** (self.num_levels - 1))
        self.post_norm = post_norm
        self.mlp_ratio = mlp_ratio
        self.init_cfg = init_cfg
        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages
        self.level2_post_norm_block_ids = level2_post_norm_block_ids
        self.num_layers = len(depths)
        self.with_cp = with_cp
        core_cls = self._core_class(core_op, use_dcn_v4_op)
        self.core_cls = core_cls

        self.patch_embed = StemLayer(in_chans=3, out_chans=channels, act_layer=act_layer, norm_layer=norm_layer)
        self.pos_drop = nn.Dropout(p=drop_rate)

        dpr = drop_path_rates(depths, drop_path_rate, drop_path_type)
        self.levels = nn.ModuleList()
        for i in range(self.num_levels):
            post_norm_block_ids = level2_post_norm_block_ids if (level2_post_norm and i == 2) else None
            start = sum(depths[:i])
            self.levels.append(InternImageBlock(
                core_op=core_cls, channels=int(channels * 2 ** i), depth=depths[i], groups=groups[i],
                downsample=i < self.num_levels - 1, mlp_ratio=mlp_ratio, drop=drop_rate,
                drop_path=dpr[start:start + depths[i]], act_layer=act_layer, norm_layer=norm_layer,
                post_norm=post_norm, offset_scale=offset_scale, layer_scale=layer_scale, with_cp=with_cp,
                dw_kernel_size=dw_kernel_size, post_norm_block_ids=post_norm_block_ids,
                res_post_norm=res_post_norm, center_feature_scale=center_feature_scale,
                **block_options))

        self._init_parameters()
        self._freeze_stages()

    def core_flops(self, height: int, width: int) -> int:
        """FLOPs of the DCN cores for a (3, height, width) input, which generic counters cannot see
        (:func:`ops_common.flops.dcn_core_flops`, the original's formula; get_flops.py adds it)."""
        return dcn_core_flops(self.depths, self.channels, height, width)

    @classmethod
    def from_variant(cls, name: str, **overrides) -> InternImage:
        """The released size ``name`` (a key of ``cls.variants``: 'T'..'G' here), with ``overrides`` on top."""
        if name not in cls.variants:
            raise ValueError(f'{cls.__name__}: variant must be one of {list(cls.variants)}, got {name!r}')
        return cls(**{**cls.variants[name], **overrides})

    def _block_options(self, kwargs: dict) -> dict:
        """Options of every block that a subclass takes among its keyword arguments (popped from ``kwargs``):
        none for InternImage (an MLP fc2 with bias; the core op's own defaults)."""
        return dict(mlp_fc2_bias=True, core_kwargs={})

    def _core_class(self, core_op: str, use_dcn_v4_op: bool) -> type[nn.Module]:
        """The blocks' core op, chosen once: ``use_dcn_v4_op`` turns DCNv3 into DCNv3 sampled by the DCNv4 operator
        (ops_dcnv4.DCNv3OnDCNv4, same parameters and keys); DCNv3_pytorch ignores it (warned)."""
        core_cls = self.core_ops[core_op]
        if use_dcn_v4_op:
            if core_cls is DCNv3:
                return DCNv3OnDCNv4
            warnings.warn(f'use_dcn_v4_op=True: {core_op} always runs the pure-PyTorch DCNv3 core; use '
                          "core_op='DCNv3' to route the sampling through the DCNv4 operator", stacklevel=3)
        return core_cls

    # -- argument checking -------------------------------------------------------------------------------------

    @classmethod
    def _check_kwargs(cls, kwargs: dict) -> None:
        unknown = [k for k in kwargs if k not in IGNORED_CLASSIFICATION_KWARGS]
        if unknown:
            raise TypeError(f'{cls.__name__} got an unexpected keyword argument {unknown[0]!r}')
        if kwargs:
            warnings.warn(f'{cls.__name__} ignores {sorted(kwargs)}: classification-model arguments without effect '
                          'on the detection backbone', stacklevel=3)

    @classmethod
    def _check_args(cls, core_op, channels, depths, groups, drop_path_type, act_layer, norm_layer, out_indices,
                    frozen_stages, level2_post_norm, level2_post_norm_block_ids, init_cfg) -> None:
        owner = cls.__name__
        _check_choice('core_op', core_op, list(cls.core_ops), owner)
        _check_choice('norm_layer', norm_layer, NORM_LAYERS, owner)
        _check_choice('act_layer', act_layer, ACT_LAYERS, owner)
        _check_choice('drop_path_type', drop_path_type, ('linear', 'uniform'), owner)
        if not isinstance(channels, int) or channels < 2 or channels % 2:
            raise ValueError(f'{owner}: channels must be an even positive integer (the stem halves it), '
                             f'got {channels!r}')
        if not depths or any(not isinstance(d, int) or d < 1 for d in depths):
            raise ValueError(f'{owner}: depths must be a non-empty list of positive integers, got {depths!r}')
        if len(groups) != len(depths):
            raise ValueError(f'{owner}: groups must have one entry per stage ({len(depths)}), got {groups!r}')
        for i, g in enumerate(groups):
            width = channels * 2 ** i
            if not isinstance(g, int) or g < 1 or width % g:
                raise ValueError(f'{owner}: groups[{i}] = {g!r} must divide the stage-{i} width {width} '
                                 f'(channels * 2**{i})')
        if not out_indices or any(not isinstance(i, int) or not 0 <= i < len(depths) for i in out_indices):
            raise ValueError(f'{owner}: out_indices must be stage indices in [0, {len(depths) - 1}], '
                             f'got {out_indices!r}')
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= len(depths):
            raise ValueError(f'{owner}: frozen_stages must be an integer in [-1, {len(depths)}], '
                             f'got {frozen_stages!r}')
        if level2_post_norm:
            if len(depths) < 3 or level2_post_norm_block_ids is None:
                raise ValueError(f'{owner}: level2_post_norm needs a third stage and level2_post_norm_block_ids, '
                                 f'got depths={depths!r}, level2_post_norm_block_ids={level2_post_norm_block_ids!r}')
            if any(not 0 <= j < depths[2] for j in level2_post_norm_block_ids):
                raise ValueError(f'{owner}: level2_post_norm_block_ids must be block indices of stage 2 '
                                 f'(0..{depths[2] - 1}), got {level2_post_norm_block_ids!r}')
        if init_cfg is not None and (not isinstance(init_cfg, dict) or 'checkpoint' not in init_cfg):
            raise ValueError(f"{owner}: init_cfg must be None or a dict with a 'checkpoint' entry, "
                             f'got {init_cfg!r}')

    # -- initialisation ----------------------------------------------------------------------------------------

    def _init_parameters(self) -> None:
        """Construction-time init: Linear trunc-normal, LayerNorm 1/0, then the core op's reset (zero offsets/masks)."""
        self.apply(_init_linear_and_layernorm)
        core_classes = (*self.core_ops.values(), self.core_cls)
        for module in self.modules():
            if isinstance(module, core_classes):
                module._reset_parameters()

    def init_weights(self) -> None:
        """Load ``init_cfg['checkpoint']`` (upstream classification or detection checkpoint) or re-initialise.

        Without ``init_cfg`` this re-applies the construction-time init, so the DCN offset/mask projections start at
        zero (docs/deviations.md).
        """
        logger = _root_logger()
        if self.init_cfg is None:
            logger.warning(f'No pre-trained weights for {self.__class__.__name__}, training start from scratch')
            self._init_parameters()
            return
        load_pretrained_backbone(self, self.init_cfg['checkpoint'], logger=logger,
                                 wrapper_keys=self.checkpoint_wrapper_keys)

    # -- freezing ----------------------------------------------------------------------------------------------

    def _frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        stem = [self.patch_embed] if hasattr(self, 'patch_embed') else []
        return stem + list(self.levels[:self.frozen_stages])

    def _freeze_stages(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> InternImage:
        super().train(mode)
        self._freeze_stages()
        return self

    # -- forward -----------------------------------------------------------------------------------------------

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """NCHW image -> channels-last stride-4 features."""
        return self.pos_drop(self.patch_embed(x))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """:param x: (N, 3, H, W). :return: list of (N, C_i, H/2^(i+2), W/2^(i+2)) for i in out_indices."""
        x = self.forward_stem(x)
        outs = []
        for level_idx, level in enumerate(self.levels):
            x, x_ = level(x, return_wo_downsample=True)
            if level_idx in self.out_indices:
                outs.append(x_.permute(0, 3, 1, 2).contiguous())
        return outs


def _root_logger() -> logging.Logger:
    """mmdet's root logger (its log file and format) when mmdet is installed, else this module's logger."""
    try:
        from mmdet.utils import get_root_logger
    except ImportError:
        return logging.getLogger(__name__)
    return get_root_logger()


def _read_checkpoint(filename: str, logger: logging.Logger):
    """mmcv's loader (local paths, URLs, ``open-mmlab://`` names) when mmcv is installed, else ``torch.load``."""
    try:
        from mmcv.runner import _load_checkpoint
    except ImportError:
        return torch.load(filename, map_location='cpu')
    return _load_checkpoint(filename, map_location='cpu', logger=logger)


def _strip_prefix(state_dict: dict, prefix: str) -> dict:
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state_dict.items()}


def load_pretrained_backbone(model: nn.Module, filename: str, logger=None,
                             wrapper_keys: Sequence[str] = ('state_dict', 'model')) -> tuple[list[str], list[str]]:
    """Load an upstream checkpoint (classification or detector) into a backbone.

    Accepts the first of ``wrapper_keys`` the checkpoint has, or a bare state dict, strips ``module.`` and
    ``backbone.`` prefixes and drops classifier-head keys. Logs every other missing or unexpected key by name and
    returns ``(missing, unexpected)``. ``filename`` may be a local path or, with mmcv installed, anything mmcv's
    loader understands (URLs).
    """
    if logger is None:
        logger = _root_logger()
    ckpt = _read_checkpoint(filename, logger)
    if not isinstance(ckpt, dict):
        raise ValueError(f'init_cfg.checkpoint {filename!r}: expected a dict checkpoint, got {type(ckpt).__name__}')
    state_dict = next((ckpt[key] for key in wrapper_keys if key in ckpt), ckpt)
    state_dict = _strip_prefix(_strip_prefix(state_dict, 'module.'), 'backbone.')
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith(CLASSIFIER_HEAD_PREFIXES)}
    result = model.load_state_dict(state_dict, strict=False)
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    logger.info(f'{model.__class__.__name__}: loaded {len(state_dict) - len(unexpected)} tensors from {filename}')
    if missing:
        logger.warning(f'{model.__class__.__name__}: missing keys in {filename} (left at their initial values): '
                       + ', '.join(missing))
    if unexpected:
        logger.warning(f'{model.__class__.__name__}: unexpected keys in {filename} (ignored): '
                       + ', '.join(unexpected))
    return missing, unexpected
