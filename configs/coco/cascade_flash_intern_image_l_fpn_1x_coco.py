# Cascade Mask R-CNN + FlashInternImage-L (ImageNet-22k), 1x schedule: the InternImage-L config with the DCNv4
# backbone (biases in DCNv4's output projection and the MLP's fc2, 3x3 depth-wise conv), the ViTDet-style FPN with
# LayerNorm, one kept checkpoint, and the three 4conv1fc heads under the original's DCNv4FCBBoxHead name
# (with_dcn=False: the same layers and keys as ConvFCBBoxHead). Released: 55.6 box / 48.2 mask AP on COCO val2017.
_base_ = ['./cascade_internimage_l_fpn_1x_coco.py']
pretrained = 'https://huggingface.co/OpenGVLab/DCNv4/resolve/main/flash_intern_image_l_22k_384.pth'
model = dict(
    backbone=dict(
        type='FlashInternImage',
        core_op='DCNv4',
        dcn_output_bias=True,
        mlp_fc2_bias=True,
        dw_kernel_size=3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(type='FPN_vitdet', norm_cfg=dict(type='LN', requires_grad=True), use_residual=True),
    # (a list replaces the base's list whole, so the heads are written out; they differ only in the head type)
    roi_head=dict(bbox_head=[
        dict(
            type='DCNv4FCBBoxHead',
            with_dcn=False,
            num_shared_convs=4,
            num_shared_fcs=1,
            in_channels=256,
            conv_out_channels=256,
            fc_out_channels=1024,
            roi_feat_size=7,
            num_classes=80,
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.], target_stds=stage_stds),
            reg_class_agnostic=False,
            reg_decoded_bbox=True,
            norm_cfg=dict(type='SyncBN', requires_grad=True),
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type='GIoULoss', loss_weight=10.0))
        for stage_stds in ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067])
    ]))
checkpoint_config = dict(max_keep_ckpts=1)
