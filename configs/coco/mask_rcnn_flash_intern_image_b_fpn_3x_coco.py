# Mask R-CNN + FlashInternImage-B, 3x schedule with the AutoAugment pipeline, drop-path 0.4, 4 images per GPU,
# lr 2e-4 with layer decay 0.9 and the DCNv4 offset/mask projections at 0.01x lr (offset_lr_scale).
# Released: 50.6 box / 45.4 mask AP on COCO val2017.
_base_ = [
    './mask_rcnn_flash_intern_image_b_fpn_1x_coco.py',
    '../_base_/datasets/coco_instance_autoaugment.py',
]
model = dict(backbone=dict(drop_path_rate=0.4))
data = dict(samples_per_gpu=4, train=dict(pipeline={{_base_.train_pipeline_autoaugment}}))
optimizer = dict(lr=0.0002, paramwise_cfg=dict(layer_decay_rate=0.9, offset_lr_scale=0.01))
lr_config = dict(step=[27, 33])  # schedule_3x
runner = dict(max_epochs=36)
# 4 images per GPU on an unstated number of GPUs: --auto-scale-lr needs auto_scale_lr.base_batch_size=N
auto_scale_lr = dict(base_batch_size=None)
