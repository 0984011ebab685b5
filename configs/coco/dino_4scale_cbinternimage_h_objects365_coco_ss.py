# DINO (4 scales) + CB-InternImage-H (composite backbone: two InternImage-H), fine-tuned on COCO from the
# Objects365-pretrained detector, large-scale-range resize, single-scale test at 2000x1000.
# 1 image per GPU is required (CBDINOHead). Released: dino_4scale_cbinternimage_h_objects365_coco.pth, 64.5 box AP.
_base_ = ['./dino_4scale_internimage_h_objects365_coco_ss.py']
# the InternImage-H detector with the composite backbone, the CB neck and the CB head (as the CB-H base model)
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
load_from = ('https://huggingface.co/OpenGVLab/InternImage/resolve/main/'
             'dino_4scale_cbinternimage_h_objects365_80classes.pth')
# custom_hooks = [dict(type='ExpMomentumEMAHook', resume_from=None, momentum=0.0003, priority=49)]
