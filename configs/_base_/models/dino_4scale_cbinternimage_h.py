# DINO (4 scales) with CB-InternImage-H (composite backbone: two InternImage-H), for the CB-H configs on COCO,
# LVIS, OpenImages and VOC: the InternImage-H detector with the composite backbone, the CB neck and the CB head.
# 1 image per GPU is required (CBDINOHead).
_base_ = './dino_4scale_internimage_h.py'
model = dict(
    type='CBDINO',
    backbone=dict(type='CBInternImage', out_indices=[(0, 1, 2, 3), (1, 2, 3)]),
    # a one-element list: mmcv wraps it in a Sequential, hence the `neck.0.*` checkpoint keys
    neck=[
        dict(
            type='CBChannelMapper',
            in_channels=[640, 1280, 2560],
            kernel_size=1,
            out_channels=256,
            act_cfg=None,
            norm_cfg=dict(type='GN', num_groups=32),
            num_outs=4)
    ],
    bbox_head=dict(type='CBDINOHead'))
