# A small DINO with the demo InternImage backbone, sized for a CPU, on the synthetic shapes dataset (boxes only).
# Same data, backbone (pre-trained, shipped) and optimiser recipe as mask_rcnn_internimage_demo_shapes.py; the
# transformer is scaled down (64-d embeddings, 2 encoder and 3 decoder layers, 100 queries, 20 denoising queries).
# Little tuned (DETR-style detectors converge more slowly than Mask R-CNN, so `make demo` trains the Mask R-CNN):
# 1000 iterations (3.7 min at 0.22 s/iter, one thread on a shared 2-core machine) reached bbox mAP 0.459.
#   DEMO_CONFIG=configs/demo/dino_internimage_demo_shapes.py DEMO_EVAL=bbox bash tools/run_demo.sh .venv/bin/python
_base_ = ['./mask_rcnn_internimage_demo_shapes.py']
embed_dims = 64
ffn_cfg = dict(type='FFN', embed_dims=embed_dims, feedforward_channels=256, num_fcs=2, ffn_drop=0.0,
               act_cfg=dict(type='ReLU', inplace=True))
model = dict(
    _delete_=True,
    type='DINO',
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
        out_indices=(1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/demo/internimage_demo_shapes_pretrain.pth')),
    neck=dict(type='ChannelMapper', in_channels=[64, 128, 256], kernel_size=1, out_channels=embed_dims,
              act_cfg=None, norm_cfg=dict(type='GN', num_groups=16), num_outs=4),
    bbox_head=dict(
        type='DINOHead',
        num_query=100,
        num_classes=4,
        in_channels=2048,  # unused
        sync_cls_avg_factor=True,
        as_two_stage=True,
        with_box_refine=True,
        dn_cfg=dict(type='CdnQueryGenerator', noise_scale=dict(label=0.5, box=1.0),
                    group_cfg=dict(dynamic=True, num_groups=None, num_dn_queries=20)),
        transformer=dict(
            type='DinoTransformer',
            two_stage_num_proposals=100,
            encoder=dict(
                type='DetrTransformerEncoder',
                num_layers=2,
                transformerlayers=dict(
                    type='BaseTransformerLayer',
                    attn_cfgs=dict(type='MultiScaleDeformableAttention', embed_dims=embed_dims, dropout=0.0),
                    ffn_cfgs=ffn_cfg,
                    operation_order=('self_attn', 'norm', 'ffn', 'norm'))),
            decoder=dict(
                type='DinoTransformerDecoder',
                num_layers=3,
                return_intermediate=True,
                transformerlayers=dict(
                    type='DetrTransformerDecoderLayer',
                    attn_cfgs=[
                        dict(type='MultiheadAttention', embed_dims=embed_dims, num_heads=4, dropout=0.0),
                        dict(type='MultiScaleDeformableAttention', embed_dims=embed_dims, dropout=0.0),
                    ],
                    feedforward_channels=256,  # required by mmdet's decoder layer; ffn_cfgs sets the 64-d FFN
                    ffn_cfgs=ffn_cfg,
                    operation_order=('self_attn', 'norm', 'cross_attn', 'norm', 'ffn', 'norm')))),
        positional_encoding=dict(type='SinePositionalEncoding', num_feats=embed_dims // 2, temperature=20,
                                 normalize=True),
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
        loss_iou=dict(type='GIoULoss', loss_weight=2.0)),
    train_cfg=dict(
        assigner=dict(
            type='HungarianAssigner',
            cls_cost=dict(type='FocalLossCost', weight=2.0),
            reg_cost=dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
            iou_cost=dict(type='IoUCost', iou_mode='giou', weight=2.0))),
    test_cfg=dict(max_per_img=20))
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', img_scale=(128, 128), keep_ratio=True),
    dict(type='RandomFlip', flip_ratio=0.5),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='Pad', size_divisor=32),
    dict(type='DefaultFormatBundle'),
    dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels']),
]
data = dict(train=dict(pipeline=train_pipeline))
optimizer = dict(lr=2e-4, weight_decay=1e-4)
optimizer_config = dict(grad_clip=dict(max_norm=0.1, norm_type=2))
evaluation = dict(metric=['bbox'])
