# A small InternImage Mask R-CNN sized for a 2-core CPU, trained by `make demo` on the synthetic shapes dataset
# (tools/make_synthetic_coco.py: 128-px images, 4 classes, boxes and polygon masks).
#
# What makes it learn in minutes on a CPU (the COCO recipe, scaled down, does not):
# - a tiny InternImage (stage widths 32-256, 16 channels per DCNv3 group as in the released models) running the
#   compiled CPU DCNv3 kernel (core_op='DCNv3');
# - GroupNorm in a 64-channel FPN and in the RoI heads, which keeps the randomly initialised heads stable with
#   batch 2 and a high learning rate;
# - AdamW at 1e-3 with a short linear warm-up and cosine decay, gradient clipping;
# - small images with few, large objects: anchors and RoI sampling sized for them;
# - a backbone pre-trained on the same synthetic domain (never on the demo's train or val images) by
#   tools/pretrain_demo_backbone.py and shipped in checkpoints/demo/ (5.8 MB), loaded through init_cfg as the
#   released configs load the ImageNet checkpoints. *_scratch.py is the same model from random weights.
#
# Self-contained (no _base_) so that the demo depends on nothing but this file and the generated data.
data_root = 'data/demo_shapes/'
classes = ('circle', 'square', 'triangle', 'star')
image_size = 128
norm_cfg = dict(type='GN', num_groups=16, requires_grad=True)

model = dict(
    type='MaskRCNN',
    backbone=dict(
        type='InternImage',
        core_op='DCNv3',
        channels=32,
        depths=[2, 2, 4, 2],
        groups=[2, 4, 8, 16],
        mlp_ratio=4.,
        drop_path_rate=0.0,
        norm_layer='LN',
        layer_scale=None,
        offset_scale=1.0,
        post_norm=False,
        with_cp=False,
        out_indices=(0, 1, 2, 3),
        # pre-trained by tools/pretrain_demo_backbone.py on freshly rendered shapes images (semantic segmentation);
        # *_scratch.py trains the same model from random weights
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/demo/internimage_demo_shapes_pretrain.pth')),
    neck=dict(
        type='FPN',
        in_channels=[32, 64, 128, 256],
        out_channels=64,
        num_outs=4,
        norm_cfg=norm_cfg),
    rpn_head=dict(
        type='RPNHead',
        in_channels=64,
        feat_channels=64,
        anchor_generator=dict(type='AnchorGenerator', scales=[8], ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16, 32]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0], target_stds=[1.0, 1.0, 1.0, 1.0]),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    roi_head=dict(
        type='StandardRoIHead',
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
            out_channels=64,
            featmap_strides=[4, 8, 16, 32]),
        bbox_head=dict(
            type='ConvFCBBoxHead',
            num_shared_convs=2,
            num_shared_fcs=1,
            in_channels=64,
            conv_out_channels=64,
            fc_out_channels=256,
            roi_feat_size=7,
            num_classes=len(classes),
            norm_cfg=norm_cfg,
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                            target_stds=[0.1, 0.1, 0.2, 0.2]),
            reg_class_agnostic=False,
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
        mask_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=14, sampling_ratio=0),
            out_channels=64,
            featmap_strides=[4, 8, 16, 32]),
        mask_head=dict(
            type='FCNMaskHead',
            num_convs=2,
            in_channels=64,
            conv_out_channels=64,
            num_classes=len(classes),
            norm_cfg=norm_cfg,
            loss_mask=dict(type='CrossEntropyLoss', use_mask=True, loss_weight=1.0))),
    train_cfg=dict(
        rpn=dict(
            assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3,
                          match_low_quality=True, ignore_iof_thr=-1),
            sampler=dict(type='RandomSampler', num=128, pos_fraction=0.5, neg_pos_ub=-1, add_gt_as_proposals=False),
            allowed_border=-1,
            pos_weight=-1,
            debug=False),
        rpn_proposal=dict(nms_pre=500, max_per_img=200, nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0),
        rcnn=dict(
            assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5,
                          match_low_quality=True, ignore_iof_thr=-1),
            sampler=dict(type='RandomSampler', num=64, pos_fraction=0.25, neg_pos_ub=-1, add_gt_as_proposals=True),
            mask_size=28,
            pos_weight=-1,
            debug=False)),
    test_cfg=dict(
        rpn=dict(nms_pre=500, max_per_img=100, nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0),
        rcnn=dict(score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5), max_per_img=20, mask_thr_binary=0.5)))

dataset_type = 'CocoDataset'
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', img_scale=(image_size, image_size), keep_ratio=True),
    dict(type='RandomFlip', flip_ratio=0.5),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='Pad', size_divisor=32),
    dict(type='DefaultFormatBundle'),
    dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels', 'gt_masks']),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='MultiScaleFlipAug',
        img_scale=(image_size, image_size),
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
    samples_per_gpu=2,
    workers_per_gpu=1,
    train=dict(type=dataset_type, classes=classes, ann_file=data_root + 'annotations/instances_train.json',
               img_prefix=data_root + 'train/', pipeline=train_pipeline),
    val=dict(type=dataset_type, classes=classes, ann_file=data_root + 'annotations/instances_val.json',
             img_prefix=data_root + 'val/', pipeline=test_pipeline),
    test=dict(type=dataset_type, classes=classes, ann_file=data_root + 'annotations/instances_val.json',
              img_prefix=data_root + 'val/', pipeline=test_pipeline))

max_iters = 1000
optimizer = dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05)
optimizer_config = dict(grad_clip=dict(max_norm=10.0, norm_type=2))
lr_config = dict(policy='CosineAnnealing', min_lr_ratio=0.02, by_epoch=False,
                 warmup='linear', warmup_iters=100, warmup_ratio=0.01)
runner = dict(type='IterBasedRunner', max_iters=max_iters)
checkpoint_config = dict(interval=250, by_epoch=False, max_keep_ckpts=2, save_last=True)
evaluation = dict(interval=max_iters, metric=['bbox', 'segm'])
log_config = dict(interval=25, hooks=[dict(type='TextLoggerHook', by_epoch=False)])
custom_hooks = [dict(type='NumClassCheckHook')]
# as configs/_base_/default_runtime.py: mmdet's own tools find the plugin; the lr is set for 1 process x 2 images
custom_imports = dict(imports=['mmdet_custom'], allow_failed_imports=False)
auto_scale_lr = dict(enable=False, base_batch_size=2)
dist_params = dict(backend='nccl')
log_level = 'INFO'
load_from = None
resume_from = None
workflow = [('train', 1)]
opencv_num_threads = 0
mp_start_method = 'fork'
