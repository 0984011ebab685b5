# As detection_openvino_static-800x1344.py, run in bf16 (fastest on CPUs with AMX; close to, not equal to, fp32).
_base_ = ['./detection_openvino_static-800x1344.py']

backend_config = dict(precision='bf16')
