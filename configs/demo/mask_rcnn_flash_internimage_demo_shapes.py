# The demo Mask R-CNN (see mask_rcnn_internimage_demo_shapes.py) with a tiny FlashInternImage backbone: the same
# widths, depths and 16 channels per group, DCNv4 as the token mixer (its compiled CPU kernel; the PyTorch reference
# core where ops_dcnv4 is not built). No demo-domain pre-trained FlashInternImage is shipped, so it trains from
# random weights (compare it with mask_rcnn_internimage_demo_shapes_scratch.py, not with the pre-trained demo):
#   DEMO_CONFIG=configs/demo/mask_rcnn_flash_internimage_demo_shapes.py make demo
_base_ = ['./mask_rcnn_internimage_demo_shapes.py']
model = dict(backbone=dict(type='FlashInternImage', core_op='DCNv4', init_cfg=None))
