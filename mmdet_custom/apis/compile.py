"""``--compile`` of the inference entry points (test.py, image_demo.py, the benchmarks): the detector's backbone
under ``torch.compile`` (inductor). DCNv3/DCNv4 are torch custom ops while compiling (``ops_dcnv3/functions/
custom_op.py``, ``ops_dcnv4/functions/custom_op.py``), so an InternImage backbone is one graph. The first image of
each padded size compiles (tens of seconds on a small CPU); the neck and heads stay eager (mmdet's data-dependent
box code would break the graph at every step).
"""
from __future__ import annotations

import torch


def add_compile_argument(parser) -> None:
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile the backbone (inductor; the first image of each input size compiles, '
                             'tens of seconds on a CPU)')


def compile_backbone(model: torch.nn.Module, enabled: bool = True, backend: str = 'inductor') -> torch.nn.Module:
    """``model.backbone`` compiled in place (``nn.Module.compile``: the state-dict keys stay as they are)."""
    if enabled:
        model.backbone.compile(backend=backend)
    return model
