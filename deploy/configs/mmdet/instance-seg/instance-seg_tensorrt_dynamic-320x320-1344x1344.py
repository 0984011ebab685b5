# Upstream's deploy config for InternImage Mask R-CNN / Cascade Mask R-CNN on TensorRT, inputs 320..1344 px.
# Unlike upstream (opset 11 with a DCNv3 TensorRT plugin), the ONNX file is exported at opset 16 (see
# ../../_base_/onnx_config.py): DCNv3 becomes standard GridSample, which TensorRT >= 8.5 runs natively, so no DCNv3
# plugin is needed. NMS, multi-level RoIAlign and top-k stay mmdeploy's own TensorRT plugins, as upstream
# (libmmdeploy_tensorrt_ops.so, shipped in the mmdeploy wheel).
_base_ = ['../_base_/base_instance-seg_dynamic.py', '../../_base_/backends/tensorrt.py']

backend_config = dict(
    common_config=dict(max_workspace_size=1 << 30),
    model_inputs=[
        dict(
            input_shapes=dict(
                input=dict(
                    min_shape=[1, 3, 320, 320],
                    opt_shape=[1, 3, 800, 1344],
                    max_shape=[1, 3, 1344, 1344])))
    ])
