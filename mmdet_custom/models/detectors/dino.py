"""DINO detector: mmdet's DETR, but with a neck (DETR's constructor forces ``neck=None``)."""
from __future__ import annotations

from mmdet.models.builder import DETECTORS
from mmdet.models.detectors import DETR
from mmdet.models.detectors.single_stage import SingleStageDetector


@DETECTORS.register_module()
class DINO(DETR):
    """Backbone -> neck -> :class:`DINOHead`; training and testing follow ``SingleStageDetector``.

    State-dict prefixes: ``backbone.*``, ``neck.*``, ``bbox_head.*``.
    """

    def __init__(self, backbone: dict, neck: dict | list | None = None, bbox_head: dict | None = None,
                 train_cfg: dict | None = None, test_cfg: dict | None = None, pretrained: str | None = None,
                 init_cfg: dict | None = None) -> None:
        SingleStageDetector.__init__(self, backbone, neck, bbox_head, train_cfg, test_cfg, pretrained, init_cfg)
