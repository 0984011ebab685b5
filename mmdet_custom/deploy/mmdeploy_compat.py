"""mmdeploy 0.14 (upstream's pin) on today's torch: export patches, applied only by the export code (``deploy.py``,
``tools/benchmarks/bench_export.py``) through :func:`apply_mmdeploy_patches` (or ``apply_export_patches``, which
applies them before this package's rewriters), never at import. Each is covered by
``tests/deploy/test_mmdeploy_compat.py``. They change mmdeploy's own rewrites only; torch is untouched.

Why opset 16: DCNv3 exports through the standard ``GridSample`` operator, defined from opset 16 on, so the ONNX file
needs no custom DCNv3 node. mmdeploy 0.14's rewrites were written for opset 11; three of them emit nodes that are
invalid from opset 13 on (``Squeeze``/``Unsqueeze`` with an ``axes`` attribute, ``RoiAlign`` with an ``aligned``
attribute), and one replaces ``grid_sample`` by mmdeploy's own custom node. The patched versions emit the form that
is valid at the exported opset, and are unchanged below opset 13.
"""
from __future__ import annotations

import builtins
import sys

from mmcv_custom.cli.errors import UserError
from mmcv_custom.stack_check import installed_version

MMDEPLOY_REQUIRED = '0.14'
ONNX_INT64 = 7                 # onnx.TensorProto.INT64, the ``to`` attribute of Cast
GRID_SAMPLE_MIN_OPSET = 16     # first opset with the standard GridSample operator
_MMDEPLOY_PATCHED_MARK = '_internimage_patched'


class MMDeployError(ImportError, UserError):
    """mmdeploy is missing or is not the 0.14.x line; the message names the fix."""


def check_mmdeploy() -> None:
    """Raise :class:`MMDeployError` with one line naming the fix when mmdeploy 0.14.x is not importable."""
    version = installed_version('mmdeploy')
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


def _frame_exec(source, globals=None, locals=None):
    """``exec`` as before Python 3.13: without a namespace, in the caller's globals and its frame's locals."""
    if globals is None:
        frame = sys._getframe(1)
        globals, locals = frame.f_globals, frame.f_locals
    return builtins.exec(source, globals, locals)


def _frame_eval(source, globals=None, locals=None):
    """``eval`` as before Python 3.13 (see :func:`_frame_exec`)."""
    if globals is None:
        frame = sys._getframe(1)
        globals, locals = frame.f_globals, frame.f_locals
    return builtins.eval(source, globals, locals)


def _patch_mmdeploy_rewriter_exec_locals() -> None:
    """Symptom, Python 3.13: every export stops with ``NameError: name 'mmdeploy' is not defined`` (or ``'mmdet'``,
    ``'torch'``) in ``mmdeploy/core/rewriters/function_rewriter.py``, ``_set_func``.

    mmdeploy's rewriter helpers (``_set_func``, ``_del_func``, ``import_function``, ``eval_with_import``) run
    ``exec('import mmdeploy.x')`` and then ``eval('mmdeploy.x.f')`` in the same function, relying on ``exec`` binding
    the module in the function's locals. From 3.13 on (PEP 667) ``exec``/``eval`` without a namespace work on a fresh
    snapshot of the locals each call, so the import is lost. The two modules get module-level ``exec``/``eval`` that
    pass the caller's frame locals explicitly (a write-through view on 3.13, the frame's one locals dict before), which
    is the behaviour the helpers were written for. Before 3.13 nothing is changed.
    """
    if sys.version_info < (3, 13):
        return
    from mmdeploy.core.rewriters import function_rewriter, rewriter_utils

    for module in (function_rewriter, rewriter_utils):
        module.exec = _frame_exec
        module.eval = _frame_eval


MMDEPLOY_PATCHES = (
    _patch_mmdeploy_rewriter_exec_locals,
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
