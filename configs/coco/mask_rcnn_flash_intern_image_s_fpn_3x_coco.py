# Mask R-CNN + FlashInternImage-S, 3x schedule with the AutoAugment pipeline; unlike the T 3x config the original
# trains it with drop-path 0.4, 8 images per GPU ("4 nodes, total batch 64") and lr 2e-4.
# Released: 50.5 box / 44.9 mask AP on COCO val2017.
_base_ = [
    './mask_rcnn_flash_intern_image_s_fpn_1x_coco.py',
    '../_base_/datasets/coco_instance_autoaugment.py',
]
model = dict(backbone=dict(drop_path_rate=0.4))
data = dict(samples_per_gpu=8, train=dict(pipeline={{_base_.train_pipeline_autoaugment}}))
optimizer = dict(lr=0.0002)
lr_config = dict(step=[27, 33])  # schedule_3x
runner = dict(max_epochs=36)
auto_scale_lr = dict(base_batch_size=64)  # "4 nodes, total batch 64"
