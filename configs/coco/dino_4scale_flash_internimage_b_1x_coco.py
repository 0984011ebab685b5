# DINO (4 scales) + FlashInternImage-B, 1x: the FlashInternImage-S DINO config with the B widths, offset_scale 0.5
# and its neck inputs. Released: 56.0 box AP on COCO val2017.
_base_ = ['./dino_4scale_flash_internimage_s_1x_coco.py']
pretrained = 'https://huggingface.co/OpenGVLab/DCNv4/resolve/main/flash_intern_image_b_1k_224.pth'
model = dict(
    backbone=dict(
        channels=112,
        groups=[7, 14, 28, 56],
        offset_scale=0.5,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[224, 448, 896]))
