# Detection (boxes only: DINO / CB-DINO, or a detector without a mask head) on ONNX Runtime with dynamic batch and
# image size.
_base_ = ['../_base_/base_dynamic.py', '../../_base_/backends/onnxruntime.py']
