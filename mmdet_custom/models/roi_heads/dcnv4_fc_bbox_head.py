"""``DCNv4FCBBoxHead``: the box head name of the Cascade FlashInternImage-L 1x config.

mmdet's ConvFCBBoxHead under that name. Its ``with_dcn`` switch (DCNv4 in the shared convs) was never implemented,
so the released model uses ``with_dcn=False``: plain 3x3 ConvModules, the same layers and state-dict keys as
ConvFCBBoxHead; ``with_dcn=True`` is refused in one line.
"""
from __future__ import annotations

from mmdet.models.builder import HEADS
from mmdet.models.roi_heads.bbox_heads import ConvFCBBoxHead


@HEADS.register_module()
class DCNv4FCBBoxHead(ConvFCBBoxHead):
    """mmdet's ConvFCBBoxHead; ``with_dcn`` must be False and ``short_cut`` (a DCN-path option) False."""

    def __init__(self, *args, with_dcn: bool = True, short_cut: bool = False, **kwargs):
        if with_dcn:
            raise ValueError('DCNv4FCBBoxHead: with_dcn=True (DCNv4 in the shared convs) was never implemented by '
                             'the original; set with_dcn=False as the released config does')
        if short_cut:
            raise ValueError('DCNv4FCBBoxHead: short_cut=True only applies to the unimplemented with_dcn path')
        super().__init__(*args, **kwargs)
