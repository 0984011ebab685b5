"""``MaskRCNN_``: the name the FlashInternImage code base registers for its Mask R-CNN (mmdet's MaskRCNN over a
copy of mmdet's TwoStageDetector with no functional change). No released config names it; it is kept so that
configs which do still build."""
from __future__ import annotations

from mmdet.models.builder import DETECTORS
from mmdet.models.detectors import MaskRCNN


@DETECTORS.register_module()
class MaskRCNN_(MaskRCNN):  # noqa: N801  (the original's registered name)
    """mmdet's MaskRCNN under the original's second name."""
