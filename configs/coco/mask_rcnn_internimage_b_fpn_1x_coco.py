# Mask R-CNN + InternImage-B, 1x schedule (12 epochs), single-scale 1333x800 training, 8 GPUs x 2 images:
# the InternImage-S config with the B backbone and its FPN inputs (same depths and layer count as S).
_base_ = ['./mask_rcnn_internimage_s_fpn_1x_coco.py']
pretrained = 'https://huggingface.co/OpenGVLab/InternImage/resolve/main/internimage_b_1k_224.pth'
model = dict(
    backbone=dict(
        channels=112,
        groups=[7, 14, 28, 56],
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[112, 224, 448, 896]))
