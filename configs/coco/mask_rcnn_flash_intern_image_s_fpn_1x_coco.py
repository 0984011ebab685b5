# Mask R-CNN + FlashInternImage-S, 1x schedule: the FlashInternImage-T config with the S backbone (post-norm, 3x3
# depth-wise conv before DCNv4's offset/mask projection), its FPN inputs and S's layer count.
# Released: 49.2 box / 44.0 mask AP on COCO val2017.
_base_ = ['./mask_rcnn_flash_intern_image_t_fpn_1x_coco.py']
pretrained = 'https://huggingface.co/OpenGVLab/DCNv4/resolve/main/flash_intern_image_s_1k_224.pth'
model = dict(
    backbone=dict(
        channels=80,
        depths=[4, 4, 21, 4],
        groups=[5, 10, 20, 40],
        drop_path_rate=0.3,
        post_norm=True,
        dw_kernel_size=3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[80, 160, 320, 640]))
optimizer = dict(paramwise_cfg=dict(num_layers=33, depths=[4, 4, 21, 4]))
