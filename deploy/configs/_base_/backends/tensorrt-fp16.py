# TensorRT engine in fp16 (kept for parity with upstream; no detection deploy config inherits it).
backend_config = dict(type='tensorrt', common_config=dict(fp16_mode=True, max_workspace_size=0))
