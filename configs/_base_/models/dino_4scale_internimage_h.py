# DINO (4 scales) with InternImage-H: the detector shared by the H config and (through
# dino_4scale_cbinternimage_h.py) the CB-InternImage-H configs. No pretrained backbone: these start from a
# detector checkpoint (load_from) or are evaluated from a released one.
model = dict(
    type='DINO',
    backbone=dict(
        type='InternImage',
        core_op='DCNv3',
        channels=320,
        depths=[6, 6, 32, 6],
        groups=[10, 20, 40, 80],
        mlp_ratio=4.,
        drop_path_rate=0.5,
        norm_layer='LN',
        layer_scale=None,
        offset_scale=1.0,
        post_norm=False,
        dw_kernel_size=5,
        res_post_norm=True,
        level2_post_norm=True,
        level2_post_norm_block_ids=[5, 11, 17, 23, 29],
        center_feature_scale=True,
        with_cp=True,
        out_indices=(1, 2, 3),
        init_cfg=None),
    neck=dict(
        type='ChannelMapper',
        in_channels=[640, 1280, 2560],
        kernel_size=1,
        out_channels=256,
        act_cfg=None,
        norm_cfg=dict(type='GN', num_groups=32),
        num_outs=4),
    bbox_head=dict(
        type='DINOHead',
        num_query=900,
        num_classes=80,
        in_channels=2048,  # unused
        sync_cls_avg_factor=True,
        as_two_stage=True,
        with_box_refine=True,
        dn_cfg=dict(
            type='CdnQueryGenerator',
            noise_scale=dict(label=0.5, box=1.0),
            group_cfg=dict(dynamic=True, num_groups=None, num_dn_queries=1000)),
        transformer=dict(
            type='DinoTransformer',
            two_stage_num_proposals=900,
            encoder=dict(
                type='DetrTransformerEncoder',
                num_layers=6,
                transformerlayers=dict(
                    type='BaseTransformerLayer',
                    attn_cfgs=dict(type='MultiScaleDeformableAttention', embed_dims=256, dropout=0.0),
                    # use_checkpoint is accepted and ignored by mmcv's FFN (kept as the original writes it)
                    ffn_cfgs=dict(type='FFN', embed_dims=256, feedforward_channels=2048, num_fcs=2, ffn_drop=0.,
                                  use_checkpoint=True, act_cfg=dict(type='ReLU', inplace=True)),
                    operation_order=('self_attn', 'norm', 'ffn', 'norm'))),
            decoder=dict(
                type='DinoTransformerDecoder',
                num_layers=6,
                return_intermediate=True,
                transformerlayers=dict(
                    type='DetrTransformerDecoderLayer',
                    attn_cfgs=[
                        dict(type='MultiheadAttention', embed_dims=256, num_heads=8, dropout=0.0),
                        dict(type='MultiScaleDeformableAttention', embed_dims=256, num_levels=4, dropout=0.0),
                    ],
                    # DetrTransformerDecoderLayer requires these (mmcv copies them into ffn_cfgs)
                    feedforward_channels=2048,
                    ffn_dropout=0.0,
                    ffn_cfgs=dict(type='FFN', embed_dims=256, feedforward_channels=2048, num_fcs=2, ffn_drop=0.,
                                  use_checkpoint=True, act_cfg=dict(type='ReLU', inplace=True)),
                    operation_order=('self_attn', 'norm', 'cross_attn', 'norm', 'ffn', 'norm')))),
        positional_encoding=dict(type='SinePositionalEncoding', num_feats=128, temperature=20, normalize=True),
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
        loss_iou=dict(type='GIoULoss', loss_weight=2.0)),
    # the matcher's class cost (2.0) differs from the loss weight (1.0) on purpose, as in DINO
    train_cfg=dict(
        assigner=dict(
            type='HungarianAssigner',
            cls_cost=dict(type='FocalLossCost', weight=2.0),
            reg_cost=dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
            iou_cost=dict(type='IoUCost', iou_mode='giou', weight=2.0)),
        snip_cfg=dict(type='v3', weight=0.1)),  # accepted, no effect (as upstream)
    test_cfg=dict(max_per_img=300))
