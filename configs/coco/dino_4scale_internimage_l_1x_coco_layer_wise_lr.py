# DINO (4 scales) + InternImage-L (ImageNet-22k), 1x schedule with layer-wise lr decay, DETR-style AutoAugment;
# the InternImage-T config with the L backbone, its neck inputs, 300 detections per image and L's layer count.
# 8 GPUs x 2 images. Released: dino_4scale_internimage_l_1x_coco_layer_wise_lr.pth, 57.5 box AP on COCO val2017.
_base_ = ['./dino_4scale_internimage_t_1x_coco_layer_wise_lr.py']
pretrained = 'https://huggingface.co/OpenGVLab/InternImage/resolve/main/internimage_l_22k_192to384.pth'
model = dict(
    backbone=dict(
        channels=160,
        depths=[5, 5, 22, 5],
        groups=[10, 20, 40, 80],
        drop_path_rate=0.4,
        offset_scale=2.0,
        post_norm=True,
        with_cp=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[320, 640, 1280]),
    test_cfg=dict(max_per_img=300))
optimizer = dict(paramwise_cfg=dict(num_layers=37, depths=[5, 5, 22, 5]))
