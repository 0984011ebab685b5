# DINO (4 scales) + InternImage-H, fine-tuned on COCO from an Objects365-pretrained detector (no load_from here: the
# starting checkpoint is not released), large-scale-range resize, single-scale test at 2000x1000, 1 image per GPU.
# Released: dino_4scale_internimage_h_objects365_coco.pth, 63.4 box AP on COCO val2017.
_base_ = [
    '../_base_/datasets/coco_detection.py',
    '../_base_/default_runtime.py',
    '../_base_/models/dino_4scale_internimage_h.py',
]
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
# large-scale range: long side up to 2000, short side sampled in [600, 1800]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', flip_ratio=0.5),
    dict(type='Resize', img_scale=[(2000, 600), (2000, 1800)], multiscale_mode='range', keep_ratio=True),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='Pad', size_divisor=32),
    dict(type='DefaultFormatBundle'),
    dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels']),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='MultiScaleFlipAug',
        img_scale=(2000, 1000),
        flip=False,
        transforms=[
            dict(type='Resize', keep_ratio=True),
            dict(type='RandomFlip'),
            dict(type='Normalize', **img_norm_cfg),
            dict(type='Pad', size_divisor=32),
            dict(type='ImageToTensor', keys=['img']),
            dict(type='Collect', keys=['img']),
        ])
]
data = dict(
    samples_per_gpu=1,
    workers_per_gpu=2,
    train=dict(filter_empty_gt=True, pipeline=train_pipeline),
    val=dict(pipeline=test_pipeline),
    test=dict(pipeline=test_pipeline))
optimizer = dict(
    type='AdamW',
    lr=0.0001,
    weight_decay=0.0001,
    constructor='CustomLayerDecayOptimizerConstructor',
    paramwise_cfg=dict(num_layers=50, layer_decay_rate=0.94, depths=[6, 6, 32, 6], offset_lr_scale=1e-3))
optimizer_config = dict(grad_clip=dict(max_norm=0.1, norm_type=2))
lr_config = dict(policy='step', warmup='linear', warmup_iters=500, warmup_ratio=0.001, step=[])  # constant after warm-up
runner = dict(type='IterBasedRunner', max_iters=20000)
checkpoint_config = dict(interval=200, max_keep_ckpts=3)
evaluation = dict(interval=200, save_best='auto')
# custom_hooks = [dict(type='ExpMomentumEMAHook', resume_from=None, momentum=0.0003, priority=49)]
# 1 image per GPU on an unstated number of GPUs (also for G and CB-H, built on this config): --auto-scale-lr
# needs --cfg-options auto_scale_lr.base_batch_size=N
auto_scale_lr = dict(base_batch_size=None)
