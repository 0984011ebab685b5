"""``deploy.py``'s OpenVINO backend (the ``*_openvino_*`` deploy configs): the conversion to OpenVINO IR and the
backend model that runs it, both through :mod:`mmdet_custom.deploy.openvino_runner`.

mmdeploy 0.14 has an OpenVINO backend, but its converter calls the Model Optimizer (``mo``) and its wrapper
``openvino.inference_engine``, both removed from OpenVINO; neither is used. The deploy config's ``backend_config``
carries ``precision`` ('fp32' | 'bf16') and ``threads`` (None: ``OMP_NUM_THREADS``, else every core).
"""
from __future__ import annotations

import contextlib
import os.path as osp
from typing import Sequence

from .openvino_runner import PRECISIONS


def backend_options(deploy_cfg) -> dict:
    """``precision`` and ``threads`` of the deploy config's backend_config (checked: one ValueError naming the bad
    value)."""
    backend_config = deploy_cfg.get('backend_config', {})
    precision = backend_config.get('precision', 'fp32')
    threads = backend_config.get('threads', None)
    if precision not in PRECISIONS:
        raise ValueError(f"backend_config.precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f'backend_config.threads must be a positive integer or None, got {threads!r}')
    return dict(precision=precision, threads=threads)


def missing_reason() -> str | None:
    """Why OpenVINO cannot run here (naming the extra), or None."""
    from .openvino_runner import OpenVINONotInstalled, import_openvino
    try:
        import_openvino()
    except OpenVINONotInstalled as error:
        return str(error)
    return None


def to_backend(onnx_files: Sequence[str], work_dir: str) -> list[str]:
    """Each ONNX file converted to OpenVINO IR in ``work_dir`` (same name, ``.xml`` + ``.bin``)."""
    from .openvino_runner import convert_to_ir
    return [convert_to_ir(path, osp.join(work_dir, osp.splitext(osp.basename(path))[0] + '.xml'))
            for path in onnx_files]


def build_wrapper(model_file: str, output_names: Sequence[str] | None = None, precision: str = 'fp32',
                  threads: int | None = None):
    """An mmdeploy backend wrapper (``BaseWrapper``: a dict of named torch tensors in, a dict out) on
    :class:`~mmdet_custom.deploy.openvino_runner.OpenVINORunner`."""
    import numpy as np
    import torch
    from mmdeploy.backend.base import BaseWrapper

    from .openvino_runner import OpenVINORunner

    class OpenVINOWrapper(BaseWrapper):
        def __init__(self) -> None:
            self.runner = OpenVINORunner(model_file, precision, threads)
            super().__init__(list(output_names or self.runner.output_names))
            self.input_names = [port.get_any_name() for port in self.runner.compiled.inputs]

        def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            arrays = [np.ascontiguousarray(inputs[name].detach().cpu().float().numpy()) for name in self.input_names]
            results = dict(zip(self.runner.output_names, self.runner(*arrays)))
            return {name: torch.from_numpy(np.array(results[name])) for name in self.output_names}

    return OpenVINOWrapper()


@contextlib.contextmanager
def mmdeploy_wrapper(deploy_cfg):
    """Within it, mmdeploy builds OpenVINO backend models on :func:`build_wrapper` with the deploy config's
    precision and threads (``task_processor.init_backend_model``), instead of its own wrapper."""
    from mmdeploy.backend.openvino.backend_manager import OpenVINOManager

    options = backend_options(deploy_cfg)

    def build(cls, backend_files, device='cpu', input_names=None, output_names=None, deploy_cfg=None, **kwargs):
        return build_wrapper(backend_files[0], output_names, **options)

    original = OpenVINOManager.__dict__['build_wrapper']
    OpenVINOManager.build_wrapper = classmethod(build)
    try:
        yield
    finally:
        OpenVINOManager.build_wrapper = original
