# Instance segmentation in OpenVINO (CPU), static input 800x1344 (every image is resized to it, without keeping the
# aspect ratio: mmdeploy's static-shape pipeline). DCNv3 is exported as ONNX DeformConv (opset 19), which the
# conversion maps to OpenVINO's DeformableConvolution-8; mmdeploy's OpenVINO rewriters are active (RoI features
# through OpenVINO's ExperimentalDetectronROIFeatureExtractor). Precision and threads: ../../_base_/backends/openvino.py
# (a bf16 variant: instance-seg_openvino-bf16_static-800x1344.py).
_base_ = ['../_base_/base_instance-seg_static.py', '../../_base_/backends/openvino.py']

onnx_config = dict(opset_version=19, input_shape=[1344, 800])   # (width, height)
dcnv3_onnx_op = 'DeformConv'
