"""``FPN_vitdet``: mmdet's FPN with LayerNorm over the channels of every conv (the FlashInternImage necks).

The FPN is mmdet's own (laterals, top-down sum, 3x3 output convs, max-pool extra levels, Xavier init); only the norm
is new: ``norm_cfg=dict(type='LN')`` is built as :class:`ChannelsFirstLayerNorm`, a LayerNorm over dim 1, whose mmcv
abbreviation is still ``ln`` so the state-dict keys (``lateral_convs.0.ln.weight``, convs without bias) are the
released checkpoints'.
"""
from __future__ import annotations

from mmcv.cnn import NORM_LAYERS
from mmdet.models.builder import NECKS
from mmdet.models.necks import FPN
from torch import Tensor, nn


@NORM_LAYERS.register_module()
class ChannelsFirstLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel dim of an ``(N, C, H, W)`` map (same parameters as ``nn.LayerNorm(C)``)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()


@NECKS.register_module()
class FPN_vitdet(FPN):  # noqa: N801  (the original's registered name)
    """mmdet's FPN whose ``LN`` norms normalise channels. Arguments are mmdet FPN's plus ``use_residual``.

    ``use_residual=True`` (every released config) is the top-down pathway of a standard FPN; ``False`` (no
    top-down sum) is refused: no released model uses it.
    """

    def __init__(self, in_channels: list[int], out_channels: int, num_outs: int, *args,
                 norm_cfg: dict | None = None, use_residual: bool = True, **kwargs):
        if not use_residual:
            raise ValueError('FPN_vitdet: use_residual=False (no top-down pathway) is not supported; the released '
                             'FlashInternImage configs all use use_residual=True')
        if norm_cfg is not None and norm_cfg.get('type') == 'LN':
            norm_cfg = {**norm_cfg, 'type': 'ChannelsFirstLayerNorm'}
        super().__init__(in_channels, out_channels, num_outs, *args, norm_cfg=norm_cfg, **kwargs)
        self.use_residual = use_residual
