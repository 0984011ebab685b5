"""Mixed precision for every detector family: one switch, ``train.py --amp fp16|bf16`` or ``amp = dict(dtype=...)`` in
a config.

* ``fp16`` is mmdet 2.x's own mechanism, ``fp16 = dict(loss_scale='dynamic')``: the detectors' ``forward`` runs under
  CUDA autocast (mmcv's ``auto_fp16``) and ``Fp16OptimizerHook`` scales the loss with a dynamic scaler. It needs a
  GPU: mmcv builds it on ``torch.cuda.amp``.
* ``bf16`` has no mmcv counterpart: the detector's ``forward`` runs under ``torch.autocast(device, torch.bfloat16)``
  on the CPU or a GPU. bfloat16 has float32's range, so no loss scaling. The parameters, the optimizer state and the
  checkpoints stay float32.

Under either, the operations that need float32 get it: mmcv's NMS and the RoI extractors take float32 boxes
(``mmcv_custom.autocast_compat``), and DCNv3/DCNv4 sample in the dtype of their value tensor.

Inference: ``--precision fp32|bf16`` of test.py, image_demo.py and the benchmarks (:func:`apply_inference_precision`)
is the same mechanism, bf16 autocast over the detector's whole ``forward`` (backbone, neck, heads) with the same
float32 islands (NMS, RoIAlign, box decoding); the DCNv3/DCNv4 kernels get bf16 tensors and run their bf16 paths.
On a CPU with AMX (bf16 matrix units) the Linear and convolution layers run several times faster.
"""
from __future__ import annotations

import functools
import logging

import torch

from mmcv_custom.cli.errors import UserError

AMP_DTYPES = {'fp16': torch.float16, 'bf16': torch.bfloat16}


def amp_dtype(cfg) -> str | None:
    """The config's ``amp.dtype`` ('fp16', 'bf16') or None; a one-line UserError for anything else."""
    amp = cfg.get('amp')
    if amp is None:
        return None
    dtype = amp.get('dtype') if isinstance(amp, dict) else amp
    if dtype not in AMP_DTYPES:
        raise UserError(f"config field amp.dtype: must be one of {', '.join(map(repr, AMP_DTYPES))}, got {dtype!r}")
    return dtype


def autocast_forward(model: torch.nn.Module, device_type: str, dtype: torch.dtype) -> torch.nn.Module:
    """Run ``model.forward`` (training and test alike) under ``torch.autocast(device_type, dtype)``."""
    forward = model.forward

    @functools.wraps(forward)
    def forward_under_autocast(*args, **kwargs):
        with torch.autocast(device_type, dtype=dtype):
            return forward(*args, **kwargs)

    model.forward = forward_under_autocast
    model.amp_dtype = dtype
    return model


PRECISIONS = ('fp32', 'bf16')


def add_precision_argument(parser) -> None:
    """``--precision fp32|bf16`` of the inference entry points (test.py, image_demo.py, the benchmarks)."""
    parser.add_argument('--precision', choices=PRECISIONS, default='fp32',
                        help='inference precision: bf16 runs backbone, neck and heads under bf16 autocast (NMS, '
                             'RoIAlign and box decoding stay float32; fast on CPUs with AMX); default fp32')


def apply_inference_precision(model: torch.nn.Module, precision: str, device: str = 'cpu') -> torch.nn.Module:
    """The detector (before any MMDataParallel wrapping) with ``forward`` under bf16 autocast for ``'bf16'``;
    unchanged for ``'fp32'``. The weights stay float32."""
    if precision not in PRECISIONS:
        raise UserError(f"--precision: must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == 'bf16':
        autocast_forward(model, _device_type(device), torch.bfloat16)
        keep_prediction_layers_float32(model, _device_type(device))
    return model


# The heads' last layers: class logits and box deltas in bfloat16 (8 significant bits) tie many detection scores,
# which reorders COCO's ranking (demo bbox mAP -0.7 points); in float32 they cost next to nothing.
FLOAT32_PREDICTION_LAYERS = ('fc_cls', 'fc_reg', 'rpn_cls', 'rpn_reg', 'conv_logits', 'retina_cls', 'retina_reg',
                             'conv_cls', 'conv_reg', 'cls_branches')


def keep_prediction_layers_float32(model: torch.nn.Module, device_type: str) -> list[str]:
    """Run the Linear/convolution layers named in FLOAT32_PREDICTION_LAYERS (or inside one) outside autocast, in
    float32; returns their names."""
    names = []
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)) and \
                FLOAT32_PREDICTION_LAYERS_SET.intersection(name.split('.')):
            module.forward = _float32_forward(module.forward, device_type)
            names.append(name)
    return names


FLOAT32_PREDICTION_LAYERS_SET = frozenset(FLOAT32_PREDICTION_LAYERS)


def _float32_forward(forward, device_type: str):
    @functools.wraps(forward)
    def forward_in_float32(input: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type, enabled=False):
            return forward(input.float())
    return forward_in_float32


def _device_type(device: str) -> str:
    return 'cuda' if str(device).startswith('cuda') else 'cpu'


def configure_mixed_precision(cfg, device: str, logger: logging.Logger | None = None) -> str | None:
    """Check the config's ``amp`` and, for fp16, turn it into mmdet's ``fp16`` field; before the optimizer hook is
    chosen (gradient accumulation combines with it). Returns the amp dtype name or None."""
    dtype = amp_dtype(cfg)
    if dtype == 'fp16':
        if _device_type(device) != 'cuda':
            raise UserError('--amp fp16 (amp.dtype=fp16) needs a CUDA device: mmdet scales fp16 losses with '
                            'torch.cuda.amp; on the CPU use --amp bf16')
        if cfg.get('fp16') is None:
            cfg.fp16 = dict(loss_scale='dynamic')
        message = f'mixed precision: fp16 through mmdet (fp16 = {dict(cfg.fp16)})'
    elif dtype == 'bf16':
        if cfg.get('fp16') is not None:
            raise UserError('--amp bf16 (amp.dtype=bf16) and the config field fp16 both ask for mixed precision: '
                            'keep one (--cfg-options fp16=None)')
        message = f'mixed precision: bf16 autocast on {_device_type(device)} (no loss scaling; weights stay float32)'
    else:
        return None
    if logger is not None:
        logger.info(message)
    return dtype


def apply_mixed_precision(cfg, model: torch.nn.Module, device: str) -> torch.nn.Module:
    """The model side of ``amp``: bf16 runs ``forward`` under autocast (fp16 is mmdet's own, through ``cfg.fp16``)."""
    if amp_dtype(cfg) == 'bf16':
        autocast_forward(model, _device_type(device), torch.bfloat16)
    return model
