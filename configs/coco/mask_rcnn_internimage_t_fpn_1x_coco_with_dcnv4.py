# Mask R-CNN + InternImage-T, 1x, with the core sampling routed through the external DCNv4 operator package
# (same weights and state-dict keys as the DCNv3 model; needs the `DCNv4` package, CUDA only).
_base_ = './mask_rcnn_internimage_t_fpn_1x_coco.py'
model = dict(backbone=dict(use_dcn_v4_op=True))
