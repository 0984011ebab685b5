# Detection (boxes only) on ONNX Runtime with a static input shape: the shape of the image given to deploy.py
# after the model config's test pipeline. Every later input must have that same shape.
_base_ = ['../_base_/base_static.py', '../../_base_/backends/onnxruntime.py']
