"""Channel mapper for composite backbones: one shared ``ChannelMapper`` applied to both backbone copies."""
from __future__ import annotations

from mmdet.models.builder import NECKS
from mmdet.models.necks import ChannelMapper
from torch import Tensor


@NECKS.register_module()
class CBChannelMapper(ChannelMapper):
    """In training maps each of the backbone copies' feature tuples (list of two outputs); in eval only the
    copy ``cb_idx`` (the assisted, last backbone), as upstream evaluates.

    Args:
        cb_idx: which copy is used at test time.
        Other arguments: mmdet's ``ChannelMapper``.
    """

    def __init__(self, cb_idx: int = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.cb_idx = cb_idx

    def forward(self, inputs: tuple) -> list[tuple[Tensor, ...]] | tuple[Tensor, ...]:
        if not isinstance(inputs[0], (list, tuple)):  # a single backbone's features
            return super().forward(inputs)
        if not self.training:
            return super().forward(inputs[self.cb_idx])
        return [super(CBChannelMapper, self).forward(features) for features in inputs]
