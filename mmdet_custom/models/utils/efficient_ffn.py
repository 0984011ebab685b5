"""``EfficientFFN`` (mmcv FEEDFORWARD_NETWORK): a two-layer FFN computed in ``split`` chunks of the hidden width.

Used by the DINO InternImage-G configs. Chunking bounds the size of the hidden activation that has to be stored
(and, with ``use_checkpoint``, recomputes each chunk in backward instead of storing it). The result equals a
standard FFN whose fc1 rows and fc2 columns are split into ``split`` pieces; fc2's bias is kept once
(``fc2_bias``) instead of once per chunk. Parameter names are upstream's (``fc1_{i}``, ``fc2_{i}``, ``fc2_bias``),
so the released checkpoint loads.
"""
from __future__ import annotations

import torch
import torch.utils.checkpoint as checkpoint
from mmcv.cnn import build_activation_layer
from mmcv.cnn.bricks.drop import build_dropout
from mmcv.cnn.bricks.registry import FEEDFORWARD_NETWORK
from mmcv.runner.base_module import BaseModule
from torch import nn


@FEEDFORWARD_NETWORK.register_module()
class EfficientFFN(BaseModule):
    """``identity + sum_i drop(fc2_i(drop(act(fc1_i(x))))) + fc2_bias``, identity defaulting to ``x``.

    Arguments as mmcv's ``FFN`` plus ``split`` (number of hidden chunks; must divide ``feedforward_channels``)
    and ``use_checkpoint`` (gradient-checkpoint each chunk while training). Only the two-layer form exists.
    Unlike upstream, ``dropout_layer`` works (upstream called an un-imported ``build_dropout``).
    """

    def __init__(self,
                 embed_dims: int = 256,
                 feedforward_channels: int = 1024,
                 num_fcs: int = 2,
                 act_cfg: dict | None = None,
                 ffn_drop: float = 0.,
                 dropout_layer: dict | None = None,
                 add_identity: bool = True,
                 init_cfg: dict | None = None,
                 split: int = 4,
                 use_checkpoint: bool = False,
                 **kwargs):
        super().__init__(init_cfg)
        if num_fcs < 2:
            raise ValueError(f'EfficientFFN: num_fcs should be no less than 2, got {num_fcs}')
        if split < 1 or feedforward_channels % split:
            raise ValueError(f'EfficientFFN: split ({split}) must divide feedforward_channels '
                             f'({feedforward_channels})')
        self.embed_dims = embed_dims
        self.feedforward_channels = feedforward_channels
        self.num_fcs = num_fcs
        self.act_cfg = dict(type='ReLU', inplace=True) if act_cfg is None else act_cfg
        self.split = split
        self.use_checkpoint = use_checkpoint
        self.add_identity = add_identity

        chunk = feedforward_channels // split
        for i in range(split):
            setattr(self, f'fc1_{i}', nn.Linear(embed_dims, chunk))
            setattr(self, f'fc2_{i}', nn.Linear(chunk, embed_dims, bias=False))
        self.fc2_bias = nn.Parameter(torch.zeros(embed_dims))
        self.activate = build_activation_layer(self.act_cfg)
        self.drop = nn.Dropout(ffn_drop)
        self.dropout_layer = build_dropout(dropout_layer) if dropout_layer else nn.Identity()

    def _chunk(self, x: torch.Tensor, i: int) -> torch.Tensor:
        hidden = self.drop(self.activate(getattr(self, f'fc1_{i}')(x)))
        return self.drop(getattr(self, f'fc2_{i}')(hidden))

    def forward(self, x: torch.Tensor, identity: torch.Tensor | None = None) -> torch.Tensor:
        out = None
        for i in range(self.split):
            if self.use_checkpoint and x.requires_grad:
                part = checkpoint.checkpoint(self._chunk, x, i, use_reentrant=False)
            else:
                part = self._chunk(x, i)
            out = part if out is None else out + part
        out = out + self.fc2_bias
        if not self.add_identity:
            return self.dropout_layer(out)
        if identity is None:
            identity = x
        return identity + self.dropout_layer(out)
