# Test-time augmentation around the 2000x1000 test scale of the DINO H-size configs: three scales, each also
# flipped (6 views), merged by DINOHead.aug_test (model.test_cfg.tta_merge). Used by the `_ms` configs as
#   data = dict(test=dict(pipeline={{_base_.tta_test_pipeline}}))
# The original publishes no TTA settings: these scales are this project's choice.
tta = dict(img_scale=[(1600, 800), (2000, 1000), (2400, 1200)], flip=True, flip_direction='horizontal')
tta_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='MultiScaleFlipAug',
        img_scale=tta['img_scale'],
        flip=True,
        flip_direction='horizontal',
        transforms=[
            dict(type='Resize', keep_ratio=True),
            dict(type='RandomFlip'),
            dict(type='Normalize', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True),
            dict(type='Pad', size_divisor=32),
            dict(type='ImageToTensor', keys=['img']),
            dict(type='Collect', keys=['img']),
        ])
]
