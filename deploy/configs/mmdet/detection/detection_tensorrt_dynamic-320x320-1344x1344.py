# Detection (boxes only: DINO / CB-DINO, or a detector without a mask head) on TensorRT, inputs 320..1344 px.
# DCNv3 and DINO's deformable attention are exported as standard GridSample (opset 16, TensorRT >= 8.5), so DINO
# needs no TensorRT plugin at all; two-stage detectors keep mmdeploy's own NMS / RoIAlign plugins.
_base_ = ['../_base_/base_dynamic.py', '../../_base_/backends/tensorrt.py']

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
