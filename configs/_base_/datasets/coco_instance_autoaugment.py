# The DETR-style AutoAugment training pipeline (with masks) of the original's 3x R-CNN configs, kept in one place:
# this file only defines the variable `train_pipeline_autoaugment`; configs use it as
# `data = dict(train=dict(pipeline={{_base_.train_pipeline_autoaugment}}))`. It is not one of the original's _base_
# files (the original repeats the pipeline in every 3x config); the resolved configs are the same.
# Short side in {480, 512, ..., 800}, long side capped at 1333.
autoaugment_scales = [(480, 1333), (512, 1333), (544, 1333), (576, 1333), (608, 1333), (640, 1333), (672, 1333),
                (704, 1333), (736, 1333), (768, 1333), (800, 1333)]
train_pipeline_autoaugment = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', flip_ratio=0.5),
    dict(
        type='AutoAugment',
        policies=[
            # (a) plain multi-scale resize
            [dict(type='Resize', img_scale=autoaugment_scales, multiscale_mode='value', keep_ratio=True)],
            # (b) resize, random crop, then multi-scale resize again (override the first scale)
            [
                dict(type='Resize', img_scale=[(400, 1333), (500, 1333), (600, 1333)], multiscale_mode='value',
                     keep_ratio=True),
                dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600), allow_negative_crop=True),
                dict(type='Resize', img_scale=autoaugment_scales, multiscale_mode='value', override=True, keep_ratio=True),
            ],
        ]),
    # (img_norm_cfg written out: a name shared with the other _base_ files would be a duplicate key among bases)
    dict(type='Normalize', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True),
    dict(type='Pad', size_divisor=32),
    dict(type='DefaultFormatBundle'),
    dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels', 'gt_masks']),
]
