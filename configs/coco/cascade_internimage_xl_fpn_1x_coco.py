# Cascade Mask R-CNN + InternImage-XL, 1x schedule (12 epochs), single-scale 1333x800 training, 8 GPUs x 2 images:
# the InternImage-L config with the XL backbone, its FPN inputs and XL's layer count.
_base_ = ['./cascade_internimage_l_fpn_1x_coco.py']
pretrained = 'https://huggingface.co/OpenGVLab/InternImage/resolve/main/internimage_xl_22k_192to384.pth'
model = dict(
    backbone=dict(
        channels=192,
        depths=[5, 5, 24, 5],
        groups=[12, 24, 48, 96],
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[192, 384, 768, 1536]))
optimizer = dict(paramwise_cfg=dict(num_layers=39, depths=[5, 5, 24, 5]))
