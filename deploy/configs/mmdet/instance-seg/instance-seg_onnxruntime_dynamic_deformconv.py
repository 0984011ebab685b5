# As instance-seg_onnxruntime_dynamic.py, with DCNv3 exported as ONNX's DeformConv (opset 19) instead of GridSample:
# faster in ONNX Runtime, which implements DeformConv; TensorRT does not (keep the GridSample configs). OpenVINO runs
# it through mmdet_custom/deploy/openvino_runner.py (the *_openvino_* configs choose it too).
_base_ = ['./instance-seg_onnxruntime_dynamic.py']

onnx_config = dict(opset_version=19)
dcnv3_onnx_op = 'DeformConv'
