"""The one place for the old stack (mmcv-full 1.7, mmdet 2.28) running on today's torch.

Two things live here and nowhere else:

* :func:`check_stack` turns the common broken installs (wrong mmcv/mmdet, mmcv 2.x / mmdet 3.x, mmcv-full
  without its compiled ops) into one clear error that names the fix, instead of a traceback from deep inside
  mmcv.
* :func:`apply_patches` applies small, named patches for the incompatibilities a pin cannot fix. Each patch
  says which symptom it fixes; each is covered by a test in ``tests/mmcv_custom/test_compat.py`` that fails
  without it. Patches are idempotent.

Pins that make patches unnecessary live in ``requirements/``: numpy 1.26 (mmcv 1.x predates numpy 2),
opencv-python < 4.12 (4.12 wants numpy 2), yapf 0.40.1 (0.40.2 dropped ``FormatCode(verify=...)`` used by
``mmcv.Config``), setuptools < 82 (mmcv's setup.py needs ``pkg_resources``).
"""
from __future__ import annotations

import importlib
import importlib.util

MMCV_REQUIRED = '1.7'      # mmcv-full 1.7.x: the last 1.x line, accepted by mmdet 2.28 (>=1.3.17,<1.8)
MMDET_REQUIRED = '2.28'    # mmdet 2.28.x: the last 2.x line (upstream pins 2.28.1)
FIX = 'run `make setup` in the repository root (it builds mmcv-full 1.7.2 with ops against the installed torch)'


class StackError(ImportError):
    """The installed mmcv/mmdet stack cannot run this project; the message names the fix."""


def _version_of(module_name: str) -> str | None:
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return getattr(module, '__version__', '0')


def check_stack() -> None:
    """Raise :class:`StackError` with one line naming the fix when the installed stack is wrong."""
    mmcv_version = _version_of('mmcv')
    if mmcv_version is None:
        raise StackError(f'mmcv-full {MMCV_REQUIRED}.x is not installed: {FIX}')
    if mmcv_version.split('.')[0] != '1':
        raise StackError(
            f'mmcv {mmcv_version} is installed, but this project needs mmcv-full {MMCV_REQUIRED}.x (mmcv 2.x is the '
            f'OpenMMLab 2.0 line, incompatible with mmdet 2.x): `pip uninstall -y mmcv mmcv-full`, then {FIX}')
    if not mmcv_version.startswith(MMCV_REQUIRED + '.'):
        raise StackError(f'mmcv-full {mmcv_version} is installed, but this project needs mmcv-full '
                         f'{MMCV_REQUIRED}.x: {FIX}')
    if importlib.util.find_spec('mmcv._ext') is None:
        raise StackError(
            f'mmcv {mmcv_version} is installed without its compiled ops (mmcv._ext is missing: this is the "lite" '
            f'`mmcv` package or a build with MMCV_WITH_OPS=0): `pip uninstall -y mmcv mmcv-full`, then {FIX}')
    try:
        importlib.import_module('mmcv._ext')
    except ImportError as error:
        raise StackError(
            f'mmcv-full {mmcv_version} has compiled ops that fail to load ({error}); they were most likely built '
            f'against another torch: {FIX}') from None

    mmdet_version = _version_of('mmdet')
    if mmdet_version is None:
        raise StackError(f'mmdet {MMDET_REQUIRED}.x is not installed: {FIX}')
    if mmdet_version.split('.')[0] != '2':
        raise StackError(
            f'mmdet {mmdet_version} is installed, but this project is an mmdet {MMDET_REQUIRED}.x plugin (mmdet 3.x '
            f'is the OpenMMLab 2.0 line): `pip uninstall -y mmdet`, then {FIX}')
    if not mmdet_version.startswith(MMDET_REQUIRED + '.'):
        raise StackError(f'mmdet {mmdet_version} is installed, but this project needs mmdet {MMDET_REQUIRED}.x: {FIX}')


# --------------------------------------------------------------------------------------------------------
# Patches
# --------------------------------------------------------------------------------------------------------

def _patch_get_stream_int_device() -> None:
    """Symptom: ``AttributeError: 'int' object has no attribute 'type'`` in ``mmcv.parallel.scatter``.

    mmcv 1.7 calls ``torch.nn.parallel._functions._get_stream(device_id)`` with an int GPU index; since
    torch 2.1 that function takes a ``torch.device``.
    """
    import torch
    from mmcv.parallel import _functions as mmcv_functions
    from torch.nn.parallel._functions import _get_stream as torch_get_stream

    if getattr(mmcv_functions._get_stream, '_internimage_patched', False):
        return

    def _get_stream(device):
        if isinstance(device, int):
            device = torch.device('cuda', device)
        return torch_get_stream(device)

    _get_stream._internimage_patched = True
    mmcv_functions._get_stream = _get_stream


def _patch_ddp_replicated_tensor_module() -> None:
    """Symptom: ``AttributeError: 'MMDistributedDataParallel' object has no attribute
    '_use_replicated_tensor_module'`` on the first distributed training step.

    mmcv 1.7's ``MMDistributedDataParallel._run_ddp_forward`` reads this attribute, which torch 1.12/1.13's DDP
    set and torch 2.0 removed. False is what torch 1.13 used by default (no replicated-tensor module).
    """
    from mmcv.parallel import MMDistributedDataParallel

    if not hasattr(MMDistributedDataParallel, '_use_replicated_tensor_module'):
        MMDistributedDataParallel._use_replicated_tensor_module = False


def _patch_torch_load_weights_only() -> None:
    """Symptom: ``_pickle.UnpicklingError: Weights only load failed`` when loading or resuming an mmcv
    checkpoint whose ``meta`` holds non-tensor objects (e.g. a numpy ``best_score`` written by EvalHook).

    torch >= 2.6 defaults ``torch.load`` to ``weights_only=True``. mmcv checkpoints are full pickles written by
    mmcv itself, so mmcv's local-file loader asks for the pre-2.6 behaviour explicitly. Only load checkpoints you
    trust, as with any pickle (and as with mmcv on torch < 2.6).
    """
    import os.path as osp

    import torch
    from mmcv.runner.checkpoint import CheckpointLoader

    current = CheckpointLoader._schemes.get('')
    if getattr(current, '_internimage_patched', False):
        return

    def load_from_local(filename: str, map_location=None):
        filename = osp.expanduser(filename)
        if not osp.isfile(filename):
            raise FileNotFoundError(f'{filename} can not be found.')
        return torch.load(filename, map_location=map_location, weights_only=False)

    load_from_local._internimage_patched = True
    CheckpointLoader.register_scheme(prefixes='', force=True)(load_from_local)


def _patch_iter_runner_resume_without_cuda() -> None:
    """Symptom: ``RuntimeError: Found no NVIDIA driver`` when ``--resume-from`` / ``--auto-resume`` resumes an
    iteration-based run (``IterBasedRunner``) on a machine without CUDA.

    mmcv 1.7's ``IterBasedRunner.resume`` calls ``torch.cuda.current_device()`` for ``map_location='default'``
    without checking that CUDA exists (``BaseRunner.resume``, used by epoch-based runs, does check). Without CUDA the
    default becomes ``'cpu'``, which is what ``BaseRunner.resume`` does.
    """
    import torch
    from mmcv.runner import IterBasedRunner

    original = IterBasedRunner.resume
    if getattr(original, '_internimage_patched', False):
        return

    def resume(self, checkpoint, resume_optimizer=True, map_location='default'):
        if map_location == 'default' and not torch.cuda.is_available():
            map_location = 'cpu'
        return original(self, checkpoint, resume_optimizer=resume_optimizer, map_location=map_location)

    resume._internimage_patched = True
    IterBasedRunner.resume = resume


PATCHES = (
    _patch_get_stream_int_device,
    _patch_ddp_replicated_tensor_module,
    _patch_torch_load_weights_only,
    _patch_iter_runner_resume_without_cuda,
)


def apply_patches() -> None:
    """Apply every compatibility patch (idempotent)."""
    for patch in PATCHES:
        patch()


# --------------------------------------------------------------------------------------------------------
# Distributed runs without CUDA (gloo): applied by train.py / test.py only when launched distributed on a CPU.
# --------------------------------------------------------------------------------------------------------

def build_ddp_any_device(model, device: str = 'cuda', *args, **kwargs):
    """mmdet's ``build_ddp``, plus the CPU (gloo) case it refuses: ``MMDistributedDataParallel`` with no devices."""
    from mmdet.utils import build_ddp
    if device != 'cpu':
        return build_ddp(model, device, *args, **kwargs)
    kwargs.pop('device_ids', None)
    return _cpu_ddp_class()(model, *args, device_ids=None, **kwargs)


def _cpu_ddp_class():
    from mmcv.parallel import MMDistributedDataParallel
    from mmcv.parallel.scatter_gather import scatter_kwargs

    class MMDistributedDataParallelCPU(MMDistributedDataParallel):
        """mmcv's DDP wrapper without devices: it would hand DataContainers to the model unopened. Open them as
        ``MMDataParallel`` does on the CPU (scatter to device -1), then run mmcv's DDP step."""

        def _open(self, inputs, kwargs):
            inputs, kwargs = scatter_kwargs(inputs, kwargs, [-1], dim=self.dim)
            return (inputs[0] if inputs else ()), (kwargs[0] if kwargs else {})

        def train_step(self, *inputs, **kwargs):
            inputs, kwargs = self._open(inputs, kwargs)
            return super().train_step(*inputs, **kwargs)

        def val_step(self, *inputs, **kwargs):
            inputs, kwargs = self._open(inputs, kwargs)
            return super().val_step(*inputs, **kwargs)

        def forward(self, *inputs, **kwargs):  # what multi_gpu_test calls
            inputs, kwargs = self._open(inputs, kwargs)
            return super().forward(*inputs, **kwargs)

    return MMDistributedDataParallelCPU


def enable_cpu_distributed() -> None:
    """Make mmdet's distributed code paths run on a gloo group without CUDA (no-op with CUDA).

    mmdet 2.28 assumes CUDA there: ``train_detector`` wraps the model with ``build_ddp`` (which refuses 'cpu'), and
    its samplers agree on a seed through ``sync_random_seed(seed, device='cuda')``. Both names are imported into
    the using modules, so they are replaced there.
    """
    import torch

    if torch.cuda.is_available():
        return
    import mmdet.apis.train as mmdet_train
    from mmdet.core.utils import sync_random_seed
    from mmdet.datasets.samplers import class_aware_sampler, distributed_sampler, infinite_sampler

    def sync_random_seed_on_cpu(seed=None, device='cpu'):
        return sync_random_seed(seed, device='cpu')

    mmdet_train.build_ddp = build_ddp_any_device
    for module in (class_aware_sampler, distributed_sampler, infinite_sampler):
        module.sync_random_seed = sync_random_seed_on_cpu


# ========================================================================================================
# mmdeploy 0.14 section: export on torch 2.x
#
# mmdeploy 0.14 (upstream's pin) predates torch 2.x. These patches are applied only by the export code
# (deploy.py, tools/benchmarks/bench_export.py) through :func:`apply_mmdeploy_patches`, never at import, and each is
# covered by tests/deploy/test_compat_mmdeploy.py. They change mmdeploy's own rewrites only; torch is untouched.
#
# Why opset 16: DCNv3 exports through the standard ``GridSample`` operator, defined from opset 16 on, so the ONNX file
# needs no custom DCNv3 node. mmdeploy 0.14's rewrites were written for opset 11; three of them emit nodes that are
# invalid from opset 13 on (``Squeeze``/``Unsqueeze`` with an ``axes`` attribute, ``RoiAlign`` with an ``aligned``
# attribute), and one replaces ``grid_sample`` by mmdeploy's own custom node. The patched versions emit the form that
# is valid at the exported opset, and are unchanged below opset 13.
# ========================================================================================================

MMDEPLOY_REQUIRED = '0.14'
ONNX_INT64 = 7                 # onnx.TensorProto.INT64, the ``to`` attribute of Cast
GRID_SAMPLE_MIN_OPSET = 16     # first opset with the standard GridSample operator
_MMDEPLOY_PATCHED_MARK = '_internimage_patched'


class MMDeployError(ImportError):
    """mmdeploy is missing or is not the 0.14.x line; the message names the fix."""


def check_mmdeploy() -> None:
    """Raise :class:`MMDeployError` with one line naming the fix when mmdeploy 0.14.x is not importable."""
    version = _version_of('mmdeploy')
    fix = ('`pip install --no-deps -c requirements/constraints.txt mmdeploy==0.14.0` '
           '(or `make setup`; --no-deps: its protobuf==3.20.2 pin conflicts with onnx)')
    if version is None:
        raise MMDeployError(f'mmdeploy {MMDEPLOY_REQUIRED}.x is not installed: {fix}')
    if not version.startswith(MMDEPLOY_REQUIRED + '.'):
        raise MMDeployError(f'mmdeploy {version} is installed, but the export needs mmdeploy {MMDEPLOY_REQUIRED}.x: '
                            f'{fix}')


def _exported_opset(ctx) -> int:
    """The opset of the running export, as mmdeploy's own rewrites read it (from the deploy config)."""
    from mmdeploy.utils import get_ir_config
    return get_ir_config(ctx.cfg).get('opset_version', 11)


def _replace_symbolic(func_name: str, new_symbolic, **register_kwargs) -> None:
    """Swap mmdeploy's default-backend symbolic registered under ``func_name`` for ``new_symbolic`` (idempotent)."""
    from mmdeploy.core import SYMBOLIC_REWRITER

    registry = SYMBOLIC_REWRITER._registry
    records = registry._rewrite_records.get(func_name, [])
    if any(getattr(record['_object'], _MMDEPLOY_PATCHED_MARK, False) for record in records):
        return
    for record in list(records):
        if not record['_checkers']:            # the default-backend record; backend-specific ones are kept
            registry.remove_record(record['_object'])
    setattr(new_symbolic, _MMDEPLOY_PATCHED_MARK, True)
    SYMBOLIC_REWRITER.register_symbolic(func_name, **register_kwargs)(new_symbolic)


def _patch_mmdeploy_torchscript_exporter() -> None:
    """Symptom: ``torch.onnx.export`` asks for ``onnxscript`` (``ModuleNotFoundError``) during mmdeploy's export.

    torch >= 2.9 defaults ``torch.onnx.export`` to the dynamo exporter, which ignores mmdeploy's symbolic and function
    rewrites. mmdeploy's export needs the TorchScript exporter (``dynamo=False``). The rewrite is active only inside
    mmdeploy's export context.
    """
    from mmdeploy.core import FUNCTION_REWRITER

    records = FUNCTION_REWRITER._registry._rewrite_records.get('torch.onnx.export', [])
    if any(getattr(record['_object'], _MMDEPLOY_PATCHED_MARK, False) for record in records):
        return

    def torch_onnx_export__torchscript(ctx, *args, **kwargs):
        kwargs.setdefault('dynamo', False)
        return ctx.origin_func(*args, **kwargs)

    setattr(torch_onnx_export__torchscript, _MMDEPLOY_PATCHED_MARK, True)
    FUNCTION_REWRITER.register_rewriter('torch.onnx.export')(torch_onnx_export__torchscript)


def _patch_mmdeploy_roi_align_symbolic() -> None:
    """Symptoms: ``ImportError: cannot import name '_cast_Long' from 'torch.onnx.symbolic_opset9'`` when exporting
    mmcv's RoIAlign for ONNX Runtime; at opset >= 13 ONNX Runtime then rejects the graph (``Squeeze`` with an ``axes``
    attribute) and at opset >= 16 (``Unrecognized attribute: aligned`` for ``RoiAlign``).

    Same graph as mmdeploy's symbolic (standard ``RoiAlign``, batch indices cast to int64), written with torch's
    opset-aware helpers. From opset 16 on, ``aligned`` is ONNX's ``coordinate_transformation_mode``.
    """
    import torch
    from torch.onnx import symbolic_helper
    from torch.onnx.symbolic_opset11 import add, select

    def roi_align__default(ctx, g, input, rois, output_size, spatial_scale, sampling_ratio, pool_mode, aligned):
        from mmdeploy.utils import Backend, get_backend

        if get_backend(ctx.cfg) in (Backend.PPLNN, Backend.TENSORRT):   # their own RoIAlign plugin, as mmdeploy
            return g.op('mmcv::MMCVRoiAlign', input, rois, output_height_i=output_size[0],
                        output_width_i=output_size[1], spatial_scale_f=spatial_scale,
                        sampling_ratio_i=sampling_ratio, mode_s=pool_mode, aligned_i=aligned)
        first_column = select(g, rois, 1, g.op('Constant', value_t=torch.tensor([0], dtype=torch.long)))
        batch_indices = g.op('Cast', symbolic_helper._squeeze_helper(g, first_column, [1]), to_i=ONNX_INT64)
        boxes = select(g, rois, 1, g.op('Constant', value_t=torch.tensor([1, 2, 3, 4], dtype=torch.long)))
        attributes = dict(output_height_i=output_size[0], output_width_i=output_size[1],
                          spatial_scale_f=spatial_scale, sampling_ratio_i=sampling_ratio, mode_s=pool_mode)
        if _exported_opset(ctx) < 16:
            if aligned:   # opset < 16 has no half-pixel mode: shift the boxes instead
                boxes = add(g, boxes, g.op('Constant', value_t=torch.tensor([-0.5 / spatial_scale],
                                                                           dtype=torch.float)))
            return g.op('RoiAlign', input, boxes, batch_indices, **attributes)
        mode = 'half_pixel' if aligned else 'output_half_pixel'
        return g.op('RoiAlign', input, boxes, batch_indices, coordinate_transformation_mode_s=mode, **attributes)

    _replace_symbolic('mmcv.ops.roi_align.__self__', roi_align__default, backend='default')


def _patch_mmdeploy_squeeze_symbolic() -> None:
    """Symptom: ONNX Runtime rejects a graph exported at opset >= 13 (``Unrecognized attribute: axes for operator
    Squeeze``): mmdeploy's ``squeeze`` symbolic always writes the opset-11 form. Same dims, opset-aware form.
    """
    from torch.onnx import symbolic_helper

    def squeeze__default(ctx, g, self, dim=None):
        if dim is None:
            dims = [index for index, size in enumerate(self.type().sizes()) if size == 1]
        else:
            dims = [symbolic_helper._get_const(dim, 'i', 'dim')]
        return symbolic_helper._squeeze_helper(g, self, dims)

    _replace_symbolic('squeeze', squeeze__default, is_pytorch=True)


def _patch_mmdeploy_grid_sampler_symbolic() -> None:
    """Symptom: the exported graph holds ``mmdeploy::grid_sampler`` custom nodes (one per DCNv3 layer), which a stock
    ONNX Runtime, OpenVINO or TensorRT cannot run.

    mmdeploy 0.14 exports ``grid_sample`` as its custom node because opset 11 has no GridSample. From opset 16 on,
    torch's own symbolic writes the standard ``GridSample``; below 16 (and for PPLNN) mmdeploy's symbolic is kept.
    """
    from mmdeploy.pytorch.ops import grid_sampler as mmdeploy_grid_sampler
    from torch.onnx import symbolic_opset16

    original = mmdeploy_grid_sampler.grid_sampler__default

    def grid_sampler__default(ctx, g, *args):
        from mmdeploy.utils import Backend, get_backend

        if _exported_opset(ctx) >= GRID_SAMPLE_MIN_OPSET and get_backend(ctx.cfg) != Backend.PPLNN:
            return symbolic_opset16.grid_sampler(g, *args)
        return original(ctx, g, *args)

    _replace_symbolic('grid_sampler', grid_sampler__default, is_pytorch=True)


def _patch_mmdeploy_grid_priors_trt_symbolic() -> None:
    """Symptom: a TensorRT-targeted graph exported at opset >= 13 holds ``Unsqueeze`` nodes with an ``axes`` attribute
    (invalid there; TensorRT's ONNX parser rejects them) around mmdeploy's ``GridPriorsTRT`` anchor node.

    Same node, opset-aware ``Unsqueeze``.
    """
    import torch
    from mmdeploy.codebase.mmdet.core.anchor import GridPriorsTRTOp
    from torch.onnx import symbolic_helper

    if getattr(GridPriorsTRTOp.symbolic, _MMDEPLOY_PATCHED_MARK, False):
        return

    @staticmethod
    @symbolic_helper.parse_args('v', 'v', 'v', 'i', 'i')
    def symbolic(g, base_anchors, feat_h, feat_w, stride_h: int, stride_w: int):
        zero = torch.tensor([0], dtype=torch.long)
        zero_h = g.op('ConstantOfShape', symbolic_helper._unsqueeze_helper(g, feat_h, [0]), value_t=zero)
        zero_w = g.op('ConstantOfShape', symbolic_helper._unsqueeze_helper(g, feat_w, [0]), value_t=zero)
        return g.op('mmdeploy::GridPriorsTRT', base_anchors, zero_h, zero_w, stride_h_i=stride_h,
                    stride_w_i=stride_w)

    setattr(symbolic.__func__, _MMDEPLOY_PATCHED_MARK, True)
    GridPriorsTRTOp.symbolic = symbolic


MMDEPLOY_PATCHES = (
    _patch_mmdeploy_torchscript_exporter,
    _patch_mmdeploy_roi_align_symbolic,
    _patch_mmdeploy_squeeze_symbolic,
    _patch_mmdeploy_grid_sampler_symbolic,
    _patch_mmdeploy_grid_priors_trt_symbolic,
)


def apply_mmdeploy_patches() -> None:
    """Check mmdeploy and apply every mmdeploy patch (idempotent). Call before exporting."""
    check_mmdeploy()
    for patch in MMDEPLOY_PATCHES:
        patch()
