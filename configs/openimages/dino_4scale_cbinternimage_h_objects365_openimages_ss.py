# DINO (4 scales) + CB-InternImage-H on OpenImages V6 (601 classes), fine-tuned from the Objects365 detector (its
# 80-class layers are skipped on loading), class-aware sampling, 1 image per GPU.
# Released: dino_4scale_cbinternimage_h_objects365_openimages.pth, 74.1 mAP (ss).
_base_ = [
    '../_base_/datasets/openimages_detection.py',
    '../_base_/default_runtime.py',
    '../_base_/models/dino_4scale_cbinternimage_h.py',
]
model = dict(bbox_head=dict(num_classes=601))
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
# large-scale range: long side up to 2000, short side sampled in [600, 1800]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, denorm_bbox=True),
    dict(type='RandomFlip', flip_ratio=0.5),
    dict(type='Resize', img_scale=[(2000, 600), (2000, 1200)], multiscale_mode='range', keep_ratio=True),
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
    workers_per_gpu=1,
    train=dict(pipeline=train_pipeline),
    val=dict(pipeline=test_pipeline),
    test=dict(pipeline=test_pipeline),
    train_dataloader=dict(class_aware_sampler=dict(num_sample_class=1)))
optimizer = dict(
    type='AdamW',
    lr=0.0001,
    weight_decay=0.0001,
    constructor='CustomLayerDecayOptimizerConstructor',
    paramwise_cfg=dict(num_layers=50, layer_decay_rate=0.94, depths=[6, 6, 32, 6], offset_lr_scale=1e-3))
optimizer_config = dict(grad_clip=dict(max_norm=0.1, norm_type=2))
lr_config = dict(policy='step', warmup='linear', warmup_iters=500, warmup_ratio=0.001, step=[])  # constant after warm-up
runner = dict(type='IterBasedRunner', max_iters=100000)
checkpoint_config = dict(interval=2000, max_keep_ckpts=3)
evaluation = dict(interval=2000, metric='mAP', save_best='auto')
load_from = ('https://huggingface.co/OpenGVLab/InternImage/resolve/main/'
             'dino_4scale_cbinternimage_h_objects365_80classes.pth')
# custom_hooks = [dict(type='ExpMomentumEMAHook', resume_from=None, momentum=0.0003, priority=49)]
# 1 image per GPU on an unstated number of GPUs: --auto-scale-lr needs --cfg-options auto_scale_lr.base_batch_size=N
auto_scale_lr = dict(base_batch_size=None)
