# As detection_onnxruntime_dynamic.py, with DCNv3 exported as ONNX's DeformConv (opset 19) instead of GridSample:
# faster in ONNX Runtime, which implements DeformConv; TensorRT and OpenVINO do not (keep the GridSample configs).
_base_ = ['./detection_onnxruntime_dynamic.py']

onnx_config = dict(opset_version=19)
dcnv3_onnx_op = 'DeformConv'
