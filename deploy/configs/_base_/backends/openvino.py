# OpenVINO (optional extra: pip install -r requirements/openvino.txt): deploy.py converts end2end.onnx to OpenVINO IR
# (end2end.xml / end2end.bin, float32 weights) with mmdet_custom.deploy.openvino_runner, which also runs it (mmdeploy
# 0.14's own OpenVINO converter and wrapper use an API that OpenVINO has removed). The CPU plugin's inference
# precision is always set: 'fp32' or 'bf16' (its own default is bf16 on CPUs with AMX); threads: the CPU threads
# (None: OMP_NUM_THREADS, else every core).
backend_config = dict(type='openvino', precision='fp32', threads=None)
