# Mask R-CNN + FlashInternImage-T, 3x schedule (36 epochs) with the DETR-style AutoAugment multi-scale training
# pipeline; everything else as in the 1x config. Released: 49.5 box / 44.0 mask AP on COCO val2017.
_base_ = [
    './mask_rcnn_flash_intern_image_t_fpn_1x_coco.py',
    '../_base_/datasets/coco_instance_autoaugment.py',
]
data = dict(train=dict(pipeline={{_base_.train_pipeline_autoaugment}}))
lr_config = dict(step=[27, 33])  # schedule_3x
runner = dict(max_epochs=36)
