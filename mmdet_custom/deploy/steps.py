"""The export steps of ``deploy.py`` after its checks, each as mmdeploy's own tools do it but in one process (the
patches and rewriters of this package apply to every step): the task processor, PyTorch -> ONNX, the partition, the
backend check, the drawn results.
"""
from __future__ import annotations

import os.path as osp


def backend_missing_reason(backend) -> str | None:
    """Why the backend cannot build its files here, or None if it can."""
    from mmdeploy.backend.base import get_backend_manager
    from mmdeploy.utils import Backend

    if backend == Backend.ONNXRUNTIME:
        import importlib.util
        return None if importlib.util.find_spec('onnxruntime') else 'the `onnxruntime` package is not installed'
    if backend == Backend.OPENVINO:
        from mmdet_custom.deploy.openvino_backend import missing_reason
        return missing_reason()
    try:
        manager = get_backend_manager(backend.value)
    except Exception:
        return f'mmdeploy has no converter for backend {backend.value!r}'
    if manager is None or not manager.is_available():
        return f'{backend.value} is not installed here'
    return None


def build_task_processor(deploy_cfg, model_cfg, device: str):
    """As ``mmdeploy.apis.build_task_processor`` but without its backend/device check.

    That check refuses ``--device cpu`` for TensorRT; the ONNX export itself needs no GPU, so a TensorRT-targeted ONNX
    file can be written on a CPU-only machine and the engine built where TensorRT runs.
    """
    from mmdeploy.codebase import get_codebase_class, import_codebase
    from mmdeploy.utils import get_codebase

    codebase_type = get_codebase(deploy_cfg)
    import_codebase(codebase_type)
    return get_codebase_class(codebase_type).build_task_processor(model_cfg, deploy_cfg, device)


def export_onnx(task_processor, torch_model, img: str, work_dir: str, deploy_cfg) -> str:
    """PyTorch -> ONNX with mmdeploy's export (its rewrites active), as ``mmdeploy.apis.torch2onnx`` does."""
    from mmdeploy.apis.onnx import export
    from mmdeploy.utils import get_backend, get_dynamic_axes, get_input_shape, get_onnx_config

    data, model_inputs = task_processor.create_input(img, get_input_shape(deploy_cfg))
    if not hasattr(model_inputs, 'shape') and len(model_inputs) == 1:
        model_inputs = model_inputs[0]
    onnx_cfg = get_onnx_config(deploy_cfg)
    output_prefix = osp.join(work_dir, osp.splitext(osp.basename(onnx_cfg['save_file']))[0])
    axis_names = list(onnx_cfg['input_names']) + list(onnx_cfg['output_names'])
    # mmdeploy has no module rewriters for mmdet models: patching inside export leaves torch_model as it is.
    export(torch_model, model_inputs,
           input_metas=dict(img_metas=data['img_metas']) if 'img_metas' in data else None,
           output_path_prefix=output_prefix,
           backend=get_backend(deploy_cfg).value,
           input_names=onnx_cfg['input_names'],
           output_names=onnx_cfg['output_names'],
           context_info=dict(deploy_cfg=deploy_cfg),
           opset_version=onnx_cfg.get('opset_version', 11),
           dynamic_axes=get_dynamic_axes(deploy_cfg, axis_names),
           verbose=not onnx_cfg.get('strip_doc_string', True) or onnx_cfg.get('verbose', False),
           keep_initializers_as_inputs=onnx_cfg.get('keep_initializers_as_inputs', True),
           optimize=onnx_cfg.get('optimize', False))
    return output_prefix + '.onnx'


def partition(deploy_cfg, onnx_file: str, work_dir: str) -> list[str]:
    from mmdeploy.apis import extract_model, get_predefined_partition_cfg
    from mmdeploy.utils import get_partition_config

    partition_cfgs = get_partition_config(deploy_cfg)
    if partition_cfgs is None:
        return [onnx_file]
    if 'partition_cfg' in partition_cfgs:
        partition_cfgs = partition_cfgs['partition_cfg']
    else:
        partition_cfgs = get_predefined_partition_cfg(deploy_cfg, partition_cfgs['type'])
    files = []
    for partition_cfg in partition_cfgs:
        save_path = osp.join(work_dir, partition_cfg['save_file'])
        extract_model(onnx_file, partition_cfg['start'], partition_cfg['end'],
                      dynamic_axes=partition_cfg.get('dynamic_axes'), save_file=save_path)
        files.append(save_path)
    return files


def output_file(work_dir: str, name: str, index: int, count: int) -> str:
    return osp.join(work_dir, f'output_{name}.jpg' if count == 1 else f'output_{name}_{index}.jpg')


def can_show() -> bool:
    """A window can open (the original checks the same through tkinter)."""
    try:
        import tkinter
        tkinter.Tk().destroy()
        return True
    except Exception:
        return False


def visualise(task_processor, model, images: list[str], work_dir: str, name: str, show: bool,
              backend_inputs: bool) -> None:
    """Run ``model`` on each image and draw its result (``output_<name>.jpg``), as ``mmdeploy.apis.visualize_model``
    does, with a model built once."""
    import torch
    from mmdeploy.utils import get_input_shape

    input_shape = get_input_shape(task_processor.deploy_cfg)
    updater = task_processor.update_test_pipeline if backend_inputs else None
    for index, image in enumerate(images):
        model_inputs, _ = task_processor.create_input(image, input_shape, updater)
        with torch.no_grad():
            result = task_processor.run_inference(model, model_inputs)[0]
        task_processor.visualize(image=image, model=model, result=result, window_name=name, show_result=show,
                                 output_file=output_file(work_dir, name, index, len(images)))
