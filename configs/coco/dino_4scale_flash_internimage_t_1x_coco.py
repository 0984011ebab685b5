# DINO (4 scales) + FlashInternImage-T (DCNv4), 1x schedule with layer-wise lr decay 0.9, DETR-style AutoAugment:
# the InternImage-T DINO config with the DCNv4 backbone, 300 detections per image, 8 GPUs x 4 images at lr 2e-4 and
# one kept checkpoint. The encoder and decoder keep mmcv's MultiScaleDeformableAttention.
# Released: 54.7 box AP on COCO val2017 (docs/model_zoo.md).
_base_ = ['./dino_4scale_internimage_t_1x_coco_layer_wise_lr.py']
pretrained = 'https://huggingface.co/OpenGVLab/DCNv4/resolve/main/flash_intern_image_t_1k_224.pth'
model = dict(
    backbone=dict(
        type='FlashInternImage',
        core_op='DCNv4',
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    test_cfg=dict(max_per_img=300))
data = dict(samples_per_gpu=4)
optimizer = dict(lr=0.0002)
checkpoint_config = dict(max_keep_ckpts=1)
auto_scale_lr = dict(base_batch_size=32)  # 8 GPUs x 4 images
