# Instance segmentation: masks are exported at RoI resolution (28x28) and pasted into the image afterwards.
_base_ = ['./base_static.py']

onnx_config = dict(output_names=['dets', 'labels', 'masks'])
codebase_config = dict(post_processing=dict(export_postprocess_mask=False))
