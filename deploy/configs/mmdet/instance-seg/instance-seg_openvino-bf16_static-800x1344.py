# As instance-seg_openvino_static-800x1344.py, run in bf16 (fastest on CPUs with AMX; close to, not equal to, fp32).
_base_ = ['./instance-seg_openvino_static-800x1344.py']

backend_config = dict(precision='bf16')
