# Detection (boxes only) on ONNX Runtime with dynamic batch and image size.
_base_ = ['../_base_/base_dynamic.py', '../../_base_/backends/onnxruntime.py']
