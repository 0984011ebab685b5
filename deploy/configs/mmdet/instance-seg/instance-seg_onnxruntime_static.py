# Instance segmentation on ONNX Runtime with a static input shape: the shape of the image given to deploy.py
# after the model config's test pipeline (resize and pad). Every later input must have that same shape.
_base_ = ['../_base_/base_instance-seg_static.py', '../../_base_/backends/onnxruntime.py']
