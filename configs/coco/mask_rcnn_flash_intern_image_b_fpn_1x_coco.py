# Mask R-CNN + FlashInternImage-B, 1x schedule: the FlashInternImage-S config with the B widths, offset_scale 0.5
# and its FPN inputs. Released: 50.1 box / 44.5 mask AP on COCO val2017.
_base_ = ['./mask_rcnn_flash_intern_image_s_fpn_1x_coco.py']
pretrained = 'https://huggingface.co/OpenGVLab/DCNv4/resolve/main/flash_intern_image_b_1k_224.pth'
model = dict(
    backbone=dict(
        channels=112,
        groups=[7, 14, 28, 56],
        offset_scale=0.5,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[112, 224, 448, 896]))
