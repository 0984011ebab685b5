# Cascade Mask R-CNN + FlashInternImage-L, 3x schedule: the InternImage-L 3x recipe (AutoAugment pipeline, lr 2e-4,
# layer decay 0.9, offset_lr_scale 0.01 -- which here reaches DCNv4's offset/mask projections --, weight EMA,
# ConvFCBBoxHead heads) on the FlashInternImage-L model of the 1x config, with activation checkpointing and 4 images
# per GPU ("4 nodes, total batch 64"). Released: 56.7 box / 48.9 mask AP on COCO val2017.
_base_ = ['./cascade_internimage_l_fpn_3x_coco.py']
pretrained = 'https://huggingface.co/OpenGVLab/DCNv4/resolve/main/flash_intern_image_l_22k_384.pth'
model = dict(
    backbone=dict(
        type='FlashInternImage',
        core_op='DCNv4',
        with_cp=True,
        dcn_output_bias=True,
        mlp_fc2_bias=True,
        dw_kernel_size=3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(type='FPN_vitdet', norm_cfg=dict(type='LN', requires_grad=True), use_residual=True))
data = dict(samples_per_gpu=4)
checkpoint_config = dict(max_keep_ckpts=1)
