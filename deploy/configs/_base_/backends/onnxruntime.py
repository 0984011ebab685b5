# ONNX Runtime: the exported end2end.onnx is the backend file; nothing to convert.
backend_config = dict(type='onnxruntime')
