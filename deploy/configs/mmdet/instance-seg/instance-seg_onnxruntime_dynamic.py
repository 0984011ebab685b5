# Instance segmentation on ONNX Runtime (CPU or CUDA) with dynamic batch and image size: one ONNX file serves
# every input size.
_base_ = ['../_base_/base_instance-seg_dynamic.py', '../../_base_/backends/onnxruntime.py']
