# ONNX export settings shared by every deploy config.
# opset 16, not upstream's 11: DCNv3 exports through the standard GridSample operator, which ONNX defines from
# opset 16 on, so the exported graph needs no custom DCNv3 node and runs in ONNX Runtime, OpenVINO and TensorRT
# alike (upstream's opset-11 graph holds a TensorRT-only DCNv3 plugin node).
onnx_config = dict(
    type='onnx',
    export_params=True,
    keep_initializers_as_inputs=False,
    opset_version=16,
    save_file='end2end.onnx',
    input_names=['input'],
    output_names=['output'],
    input_shape=None,
    optimize=True)
