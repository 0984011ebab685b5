# DINO (4 scales) + FlashInternImage-S, 1x: the FlashInternImage-T DINO config with the S backbone (post-norm, 3x3
# depth-wise conv before DCNv4's offset/mask projection), its neck inputs and S's layer count.
# Released: 55.3 box AP on COCO val2017.
_base_ = ['./dino_4scale_flash_internimage_t_1x_coco.py']
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
    neck=dict(in_channels=[160, 320, 640]))
optimizer = dict(paramwise_cfg=dict(num_layers=33, depths=[4, 4, 21, 4]))
