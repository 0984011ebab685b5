# The demo model trained from random weights (no pre-trained backbone): the baseline of the demo's learning curve.
_base_ = ['./mask_rcnn_internimage_demo_shapes.py']
model = dict(backbone=dict(init_cfg=None))
