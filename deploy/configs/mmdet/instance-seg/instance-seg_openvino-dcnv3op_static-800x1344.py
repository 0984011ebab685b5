# As instance-seg_openvino_static-800x1344.py, with each DCNv3 core exported as one custom mmdet_custom::DCNv3 node
# that OpenVINO runs on this project's compiled DCNv3 CPU kernel (a Python OpenVINO op calling ops_dcnv3: needs the
# built extension and mmdet_custom.deploy.openvino_runner to read the model), instead of OpenVINO's
# DeformableConvolution (a reference kernel on the CPU for grouped deformable convolution).
_base_ = ['./instance-seg_openvino_static-800x1344.py']

dcnv3_onnx_op = 'DCNv3'
