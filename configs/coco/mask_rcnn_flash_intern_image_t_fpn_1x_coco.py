# Mask R-CNN + FlashInternImage-T (DCNv4), 1x schedule (12 epochs), single-scale 1333x800, 8 GPUs x 2 images:
# the InternImage-T config with the DCNv4 backbone (activation checkpointing on), the ViTDet-style FPN with LayerNorm
# ("for stable training", says the original; no accuracy gain from it) and one kept checkpoint.
# Released: 48.0 box / 43.1 mask AP on COCO val2017 (docs/model_zoo.md).
_base_ = ['./mask_rcnn_internimage_t_fpn_1x_coco.py']
pretrained = 'https://huggingface.co/OpenGVLab/DCNv4/resolve/main/flash_intern_image_t_1k_224.pth'
model = dict(
    backbone=dict(
        type='FlashInternImage',
        core_op='DCNv4',
        with_cp=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(type='FPN_vitdet', norm_cfg=dict(type='LN', requires_grad=True), use_residual=True))
checkpoint_config = dict(max_keep_ckpts=1)
