# DINO (4 scales) + InternImage-L (ImageNet-22k), 1x schedule, backbone at 0.1x lr (mmcv's default constructor:
# weight decay 0.05 on every parameter, norms and biases included); otherwise as the layer-wise-lr config.
# 8 GPUs x 2 images. Released: dino_4scale_internimage_l_1x_coco_0.1x_backbone_lr.pth, 57.6 box AP on COCO val2017.
_base_ = ['./dino_4scale_internimage_l_1x_coco_layer_wise_lr.py']
optimizer = dict(
    _delete_=True,
    type='AdamW',
    lr=0.0001,
    weight_decay=0.05,
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1)}))
