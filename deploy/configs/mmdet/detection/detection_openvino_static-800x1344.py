# Detection (boxes only) in OpenVINO (CPU), static input 800x1344 (every image is resized to it, without keeping the
# aspect ratio). DCNv3 as ONNX DeformConv (opset 19) -> OpenVINO DeformableConvolution-8. Precision and threads:
# ../../_base_/backends/openvino.py (a bf16 variant: detection_openvino-bf16_static-800x1344.py).
_base_ = ['../_base_/base_static.py', '../../_base_/backends/openvino.py']

onnx_config = dict(opset_version=19, input_shape=[1344, 800])   # (width, height)
dcnv3_onnx_op = 'DeformConv'
