"""CB-InternImage: two InternImage copies composed CBNet-style (key names: docs/checkpoints.md).

The second copy shares the first one's stem and, before each of its stages, adds a gated sum of the first
copy's stage outputs (projected by 1x1 convs and resized), so its features see both backbones. Key names are
upstream's: ``cb_modules.{0,1}.*``, ``cb_modules.1.gamma{0..3}``, ``cb_linears.{i}.{j}.*``.
Plain PyTorch like intern_image.py (upstream derives from mmcv's BaseModule, whose only use here was
``init_weights``, defined below); ``backbones/__init__.py`` registers it into mmdet.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .intern_image import InternImage


class _InternImage(InternImage):
    """One copy of a composite backbone; copy ``cb_idx >= 1`` takes assisting features before every stage."""

    def __init__(self, cb_idx: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.cb_idx = cb_idx
        if cb_idx > 0:
            for i in range(self.num_levels):
                width = int(self.channels * 2 ** i)
                setattr(self, f'gamma{i}', nn.Parameter(torch.zeros(width)))

    def del_layers(self, del_stages: int) -> None:
        """Drop the stem (shared with the first copy); upstream does so for any ``del_stages >= 0``."""
        if del_stages >= 0 and hasattr(self, 'patch_embed'):
            del self.patch_embed

    def forward_stages(self, x: torch.Tensor, cb_feeds: Sequence[torch.Tensor | None] | None = None
                       ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Run the stages from channels-last stem features.

        :return: (outputs at ``out_indices`` as NCHW, all stage outputs as NCHW) — the latter feed the next copy.
        """
        outs, all_stages = [], []
        for level_idx, level in enumerate(self.levels):
            if cb_feeds is not None and cb_feeds[level_idx] is not None:
                # Upstream casts the gate to float16 in every forward; type promotion keeps x's dtype, so the
                # only effect is gamma rounded to half precision, reproduced here for checkpoint fidelity.
                x = x + getattr(self, f'gamma{level_idx}').half() * cb_feeds[level_idx]
            x, x_ = level(x, return_wo_downsample=True)
            feat = x_.permute(0, 3, 1, 2).contiguous()
            all_stages.append(feat)
            if level_idx in self.out_indices:
                outs.append(feat)
        return outs, all_stages


class CBInternImage(nn.Module):
    """Composite backbone of two InternImages (CB-InternImage-H/G).

    :param out_indices: two sequences, the out_indices of copy 0 and copy 1 (configs: [(0,1,2,3), (1,2,3)]).
    All other keyword arguments go to both InternImage copies.
    :return: from ``forward``, a tuple of two tuples of NCHW features (copy 0, copy 1).
    """

    def __init__(self, channels: int = 96, out_indices: Sequence[Sequence[int]] | None = None,
                 cb_zero_init: bool = True, cb_del_stages: int = 1, **kwargs):
        super().__init__()
        if out_indices is None or len(out_indices) != 2:
            raise ValueError('CBInternImage: out_indices must be a list of two index sequences (one per copy), '
                             f'got {out_indices!r}')
        self.cb_zero_init = cb_zero_init  # stored, unused (the gammas start at zero anyway), as upstream
        self.cb_del_stages = cb_del_stages
        self.cb_modules = nn.ModuleList()
        for cb_idx in range(2):
            cb_module = _InternImage(channels=channels, out_indices=out_indices[cb_idx], cb_idx=cb_idx, **kwargs)
            if cb_idx > 0:
                cb_module.del_layers(cb_del_stages)
            self.cb_modules.append(cb_module)

        self.num_layers = self.cb_modules[0].num_levels
        if self.num_layers != 4:
            raise ValueError(f'CBInternImage: depths must have 4 stages, got {self.cb_modules[0].depths!r}')
        widths = [int(channels * 2 ** i) for i in range(self.num_layers)]
        self.cb_linears = nn.ModuleList()
        for i in range(self.num_layers):
            linears = nn.ModuleList()
            if i >= cb_del_stages - 1:
                for j in range(self.num_layers - i):
                    # Stage i+j's output projected to stage i's width (identity for j = 0).
                    linears.append(nn.Identity() if j == 0 else nn.Conv2d(widths[i + j], widths[i], 1))
            self.cb_linears.append(linears)

    @property
    def core_op(self) -> str:
        return self.cb_modules[0].core_op

    def core_flops(self, height: int, width: int) -> int:
        """Every composite backbone runs the full DCN stack (InternImage.core_flops each)."""
        return sum(module.core_flops(height, width) for module in self.cb_modules)

    def init_weights(self) -> None:
        # Only the copies are (re)initialised; cb_linears keep PyTorch's default init, as upstream.
        for cb_module in self.cb_modules:
            cb_module.init_weights()

    def _assist_features(self, stage_feats: Sequence[torch.Tensor], sizes: Sequence[tuple[int, int]]
                         ) -> list[torch.Tensor | None]:
        """Copy 0's stage outputs -> one channels-last feed per stage of copy 1."""
        feeds: list[torch.Tensor | None] = []
        for i in range(self.num_layers):
            if len(self.cb_linears[i]) == 0:
                feeds.append(None)
                continue
            feed = 0
            for j, linear in enumerate(self.cb_linears[i]):
                projected = linear(stage_feats[i + j])
                if projected.shape[-2:] != sizes[i]:
                    projected = F.interpolate(projected, size=sizes[i], mode='nearest')
                feed = feed + projected
            feeds.append(feed.permute(0, 2, 3, 1))
        return feeds

    def forward(self, x: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        first, second = self.cb_modules
        stem = first.forward_stem(x)
        outs0, stage_feats = first.forward_stages(stem)
        # Each copy-1 stage input has the spatial size of copy 0's stage output (ceil-halving). Upstream resizes
        # to the stem size floor-halved, identical for the size-divisor-32 inputs mmdet feeds and a shape error
        # otherwise.
        sizes = [tuple(f.shape[-2:]) for f in stage_feats]
        feeds = self._assist_features(stage_feats, sizes)
        outs1, _ = second.forward_stages(stem, feeds)
        if len(outs0) == len(outs1) + 1:
            outs0 = outs0[1:]
        return tuple(outs0), tuple(outs1)
