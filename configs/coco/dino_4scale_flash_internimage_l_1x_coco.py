# DINO (4 scales) + FlashInternImage-L (ImageNet-22k), 1x: the InternImage-L DINO recipe with the backbone at 0.1x lr
# (mmcv's default optimizer constructor, weight decay 0.05 everywhere; 8 GPUs x 2 images, 300 detections) on the
# DCNv4 backbone (biases in DCNv4's output projection and the MLP's fc2, 3x3 depth-wise conv, activation
# checkpointing) with one kept checkpoint. Released: 58.8 box AP on COCO val2017.
_base_ = ['./dino_4scale_internimage_l_1x_coco_0.1x_backbone_lr.py']
pretrained = 'https://huggingface.co/OpenGVLab/DCNv4/resolve/main/flash_intern_image_l_22k_384.pth'
model = dict(
    backbone=dict(
        type='FlashInternImage',
        core_op='DCNv4',
        with_cp=True,
        dcn_output_bias=True,
        mlp_fc2_bias=True,
        dw_kernel_size=3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)))
checkpoint_config = dict(max_keep_ckpts=1)
