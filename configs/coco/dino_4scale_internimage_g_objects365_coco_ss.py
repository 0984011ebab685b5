# DINO (4 scales) + InternImage-G, fine-tuned on COCO from an Objects365-pretrained detector (no load_from here: the
# starting checkpoint is not released): the InternImage-H config with the G backbone, its neck inputs, EfficientFFN
# in the encoder and decoder, and G's layer count. 1 image per GPU.
# Released: dino_4scale_internimage_g_objects365_coco.pth, 64.2 box AP on COCO val2017.
_base_ = ['./dino_4scale_internimage_h_objects365_coco_ss.py']
# FFN split into 4 chunks (same function, less peak memory), checkpointed chunk by chunk.
efficient_ffn = dict(type='EfficientFFN', embed_dims=256, feedforward_channels=2048, num_fcs=2, ffn_drop=0.,
                     use_checkpoint=True, act_cfg=dict(type='ReLU', inplace=True))
model = dict(
    backbone=dict(
        channels=512,
        depths=[2, 2, 48, 4],
        groups=[16, 32, 64, 128],
        post_norm=True,
        res_post_norm=False,
        level2_post_norm_block_ids=[5, 11, 17, 23, 29, 35, 41, 47]),
    neck=dict(in_channels=[1024, 2048, 4096]),
    bbox_head=dict(
        transformer=dict(
            encoder=dict(transformerlayers=dict(ffn_cfgs=efficient_ffn)),
            decoder=dict(transformerlayers=dict(ffn_cfgs=efficient_ffn)))))
optimizer = dict(paramwise_cfg=dict(num_layers=56, depths=[2, 2, 48, 4]))
