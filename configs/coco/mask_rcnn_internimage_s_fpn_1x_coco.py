# Mask R-CNN + InternImage-S, 1x schedule (12 epochs), single-scale 1333x800 training, 8 GPUs x 2 images:
# the InternImage-T config with the S backbone, its FPN inputs and S's layer count.
_base_ = ['./mask_rcnn_internimage_t_fpn_1x_coco.py']
pretrained = 'https://huggingface.co/OpenGVLab/InternImage/resolve/main/internimage_s_1k_224.pth'
model = dict(
    backbone=dict(
        channels=80,
        depths=[4, 4, 21, 4],
        groups=[5, 10, 20, 40],
        drop_path_rate=0.3,
        post_norm=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[80, 160, 320, 640]))
optimizer = dict(paramwise_cfg=dict(num_layers=33, depths=[4, 4, 21, 4]))
