"""Export an InternImage detector to a deployment backend with mmdeploy 0.14 (the original's command line).

    python deploy.py DEPLOY_CFG MODEL_CFG CHECKPOINT IMG --work-dir DIR --device cpu [--dump-info] [--test-img ...]

Steps: check the inputs -> SDK info files (``--dump-info``) -> PyTorch to ONNX -> partition (if the deploy config asks)
-> int8 calibration data (if it asks) -> backend files (a TensorRT engine, OpenVINO IR ``end2end.xml``/``.bin``, ...;
ONNX Runtime runs ``end2end.onnx`` as it is) -> the backend's and PyTorch's results drawn on the test image(s)
(``output_<backend>.jpg``, ``output_pytorch.jpg``).

DCNv3 is exported through the standard ``GridSample`` operator (the deploy configs use opset 16), so no ONNX file holds
a custom DCNv3 node: with the ONNX Runtime deploy configs the file has standard operators only and runs in a stock
``onnxruntime`` (CPU); with the TensorRT config it needs no DCNv3 plugin (mmdeploy's own NMS / RoIAlign / top-k
TensorRT plugins remain, as upstream). The DINO family exports too (boxes-only deploy configs under
deploy/configs/mmdet/detection/): its deformable attention becomes GridSample as well, through the rewriters of
``mmdet_custom.deploy``, so a DINO graph holds standard operators only, for every backend. A deploy config may
choose ONNX's ``DeformConv`` (opset 19) for DCNv3 instead (``dcnv3_onnx_op = 'DeformConv'``; the ``*_deformconv.py``
configs): faster in ONNX Runtime, not run by TensorRT. The OpenVINO deploy configs (``*_openvino_*``) choose it too:
their DeformConv becomes OpenVINO's DeformableConvolution in the conversion to IR.

Behaviour (docs/deviations.md compares it with mmdeploy's tools/deploy.py):
* every step runs in this process: the torch-2.x patches of mmdeploy (``mmdet_custom.deploy.apply_export_patches``)
  and the InternImage registrations live in this process;
* the checkpoint must match the model config (no missing, unexpected or mis-shaped tensors);
* when the deploy config's backend is not installed, the ONNX file is still written (it is what the backend's own
  tools build from) and the script then exits with an error naming the backend;
* TensorRT with ``--device cpu`` writes the ONNX file (the export needs no GPU), then stops with an error: the engine
  is built on a CUDA device;
* ``--quant`` (ncnn int8) needs ncnn and ppq, which are not part of this stack: it is refused with a clear error;
  deploy configs whose intermediate representation is not ONNX (TorchScript) are refused too;
* OpenVINO: the IR is converted, and run for the result picture, with ``mmdet_custom.deploy.openvino_backend`` (the
  deploy config's ``backend_config.precision`` and ``threads``), not with mmdeploy 0.14's converter and wrapper, which
  use an API that OpenVINO has removed.
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import os.path as osp
import sys

if importlib.util.find_spec('mmdet_custom') is None:  # not installed (`make setup` does): this script's repository
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from mmcv_custom.cli.errors import UserError, add_debug_argument, run_cli

LOG_LEVELS = ('CRITICAL', 'ERROR', 'WARNING', 'INFO', 'DEBUG', 'NOTSET')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Export model to backends.')
    parser.add_argument('deploy_cfg', help='deploy config path')
    parser.add_argument('model_cfg', help='model config path')
    parser.add_argument('checkpoint', help='model checkpoint path')
    parser.add_argument('img', help='image used to convert model model')
    parser.add_argument('--test-img', default=None, type=str, nargs='+', help='image used to test model')
    parser.add_argument('--work-dir', default=os.getcwd(), help='the dir to save logs and models')
    parser.add_argument('--calib-dataset-cfg', default=None,
                        help='dataset config path used to calibrate in int8 mode. If not specified, it will use '
                             '"val" dataset in model config instead.')
    parser.add_argument('--device', default='cpu', help='device used for conversion')
    parser.add_argument('--log-level', default='INFO', choices=LOG_LEVELS, help='set log level')
    parser.add_argument('--show', action='store_true', help='Show detection outputs')
    parser.add_argument('--dump-info', action='store_true', help='Output information for SDK')
    parser.add_argument('--quant-image-dir', default=None, help='Image directory for quantize model.')
    parser.add_argument('--quant', action='store_true', help='Quantize model to low bit.')
    parser.add_argument('--uri', default='192.168.1.1:60000', help='Remote ipv4:port or ipv6:port for inference on '
                                                                  'edge device.')
    add_debug_argument(parser)
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------------------------------
# Checks (each failure is one line naming the argument or file)
# ---------------------------------------------------------------------------------------------------------------

def check_files(args: argparse.Namespace) -> None:
    for field, path in (('deploy_cfg', args.deploy_cfg), ('model_cfg', args.model_cfg),
                        ('checkpoint', args.checkpoint), ('img', args.img)):
        if not osp.isfile(path):
            raise UserError(f'{field}: file not found: {path}')
    for path in args.test_img or []:
        if not osp.isfile(path):
            raise UserError(f'--test-img: file not found: {path}')
    if args.quant:
        raise UserError('--quant: ncnn int8 quantisation needs ncnn and ppq, which this stack does not install; '
                          'export without --quant')
    if args.calib_dataset_cfg is not None and not osp.isfile(args.calib_dataset_cfg):
        raise UserError(f'--calib-dataset-cfg: file not found: {args.calib_dataset_cfg}')


def import_stack() -> None:
    """Compatibility patches (mmdeploy side; the mmcv side came with the stack check), InternImage registrations."""
    import mmdet_custom  # noqa: F401  (registers InternImage and the DINO family)
    from mmdet_custom.deploy import apply_export_patches
    # mmdeploy patched (MMDeployError, a UserError, names the fix in one line), then the rewriters: DINO / CB-DINO
    # (mmdeploy 0.14 has none for them), DCNv3 as DeformConv
    apply_export_patches()


def load_configs(deploy_cfg_path: str, model_cfg_path: str):
    from mmdeploy.utils import get_backend, get_ir_config

    from mmcv_custom.cli.checks import load_config, read_config

    # the entry points' one config loader: the user's file and line for any failure, the model config's checks
    deploy_cfg = read_config(deploy_cfg_path, 'deploy_cfg')
    model_cfg = load_config(model_cfg_path, required=('model',), field='model_cfg')
    try:
        get_backend(deploy_cfg)
        ir_config = get_ir_config(deploy_cfg)
    except Exception as error:
        raise UserError(f'deploy_cfg: {deploy_cfg_path} is not an mmdeploy deploy config ({error})') from None
    if 'model' not in model_cfg:
        raise UserError(f'model_cfg: {model_cfg_path} has no `model` field: not a model config')
    if ir_config.get('type') != 'onnx':
        raise UserError(f'deploy_cfg: {deploy_cfg_path} asks for the {ir_config.get("type")!r} intermediate '
                          'representation; this deploy.py exports ONNX only')
    from mmdeploy.utils import Backend

    from mmdet_custom.deploy import chosen_op
    from mmdet_custom.deploy.openvino_backend import backend_options
    try:
        chosen_op(deploy_cfg)
        if get_backend(deploy_cfg) == Backend.OPENVINO:
            backend_options(deploy_cfg)
    except ValueError as error:
        raise UserError(f'deploy_cfg: {deploy_cfg_path}: {error}') from None
    return deploy_cfg, model_cfg


# ---------------------------------------------------------------------------------------------------------------
# Steps (mmdet_custom/deploy/steps.py)
# ---------------------------------------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> None:
    check_files(args)
    import_stack()
    from mmcv_custom.cli.checks import check_device
    from mmdet_custom.deploy.steps import (
        backend_missing_reason,
        build_task_processor,
        can_show,
        export_onnx,
        partition,
        visualise,
    )
    check_device(args.device)
    from mmdeploy.apis import create_calib_input_data
    from mmdeploy.apis.utils import to_backend
    from mmdeploy.utils import Backend, get_backend, get_calib_filename, get_root_logger

    logger = get_root_logger()
    logger.setLevel(args.log_level)
    deploy_cfg, model_cfg = load_configs(args.deploy_cfg, args.model_cfg)
    backend = get_backend(deploy_cfg)
    missing_reason = backend_missing_reason(backend)
    if missing_reason is not None:
        logger.warning(f'{missing_reason}: only the ONNX file will be written')
    # The checkpoint must hold exactly the model's tensors (mmcv only warns, then exports a partly random model).
    from mmcv_custom.cli.checks import check_checkpoint_matches, drop_ema_buffers, read_checkpoint, state_dict_of
    state_dict = state_dict_of(read_checkpoint(args.checkpoint), args.checkpoint)
    task_processor = build_task_processor(deploy_cfg, model_cfg, args.device)
    torch_model = task_processor.init_pytorch_model(args.checkpoint)
    state_dict = drop_ema_buffers(state_dict, torch_model, args.checkpoint)  # an EMA run's checkpoint: see there
    check_checkpoint_matches(state_dict, torch_model, args.checkpoint, f'model_cfg {args.model_cfg}')
    del state_dict
    os.makedirs(args.work_dir, exist_ok=True)

    if args.dump_info:
        from mmdeploy.backend.sdk.export_info import export2SDK
        export2SDK(deploy_cfg, model_cfg, args.work_dir, pth=args.checkpoint, device=args.device)

    onnx_file = export_onnx(task_processor, torch_model, args.img, args.work_dir, deploy_cfg)
    logger.info(f'ONNX file: {onnx_file}')
    ir_files = partition(deploy_cfg, onnx_file, args.work_dir)

    if missing_reason is not None:
        raise UserError(f'deploy_cfg: {args.deploy_cfg} targets {backend.value}, but {missing_reason}; the ONNX '
                          f'file {onnx_file} is written: build the {backend.value} model from it where '
                          f'{backend.value} is installed')
    if backend == Backend.TENSORRT and not args.device.startswith('cuda'):
        raise UserError(f'--device {args.device}: TensorRT builds its engine on a CUDA device (pass --device '
                          f'cuda:0); the ONNX file {onnx_file} is written')

    calib_filename = get_calib_filename(deploy_cfg)
    if calib_filename is not None:
        create_calib_input_data(osp.join(args.work_dir, calib_filename), deploy_cfg, model_cfg, args.checkpoint,
                                dataset_cfg=args.calib_dataset_cfg, dataset_type='val', device=args.device)

    if backend == Backend.OPENVINO:
        from mmdet_custom.deploy import openvino_backend
        backend_files = openvino_backend.to_backend(ir_files, args.work_dir)
    else:
        backend_files = to_backend(backend.value, ir_files, work_dir=args.work_dir, deploy_cfg=deploy_cfg,
                                   log_level=logging.getLevelName(args.log_level), device=args.device, uri=args.uri)
    logger.info(f'{backend.value} files: {list(backend_files)}')

    show = args.show and can_show()
    if args.show and not show:
        logger.warning('--show: no display here; the results are only written to files')
    test_images = args.test_img or [args.img]
    extra = dict(uri=args.uri) if backend == Backend.SNPE else {}
    if backend == Backend.OPENVINO:
        from mmdet_custom.deploy.openvino_backend import mmdeploy_wrapper
        with mmdeploy_wrapper(deploy_cfg):
            backend_model = task_processor.init_backend_model(backend_files, **extra)
    else:
        backend_model = task_processor.init_backend_model(backend_files, **extra)
    visualise(task_processor, backend_model, test_images, args.work_dir, backend.value, show, backend_inputs=True)
    visualise(task_processor, torch_model, test_images, args.work_dir, 'pytorch', show, backend_inputs=False)
    logger.info('All process success.')


def main(argv: list[str] | None = None) -> None:
    run(parse_args(argv))


if __name__ == '__main__':
    run_cli(main, 'deploy.py')
