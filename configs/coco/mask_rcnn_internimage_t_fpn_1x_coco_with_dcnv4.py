# Mask R-CNN + InternImage-T, 1x, with the DCNv3 module's sampling routed through the DCNv4 operator (ops_dcnv4,
# fed the packed offsets and the softmaxed mask; CPU and CUDA): the same weights, state-dict keys and outputs as the
# DCNv3 model.
_base_ = './mask_rcnn_internimage_t_fpn_1x_coco.py'
model = dict(backbone=dict(use_dcn_v4_op=True))
