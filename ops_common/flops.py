"""The DCN core's FLOPs, which generic counters (mmcv's get_model_complexity_info) cannot see inside the op.

The original's formula for an InternImage backbone: per stage i, for every block,
5 * (H / (4 * 2^i)) * (W / (4 * 2^i)) * 9 * C_i (bilinear sampling and weighting of 9 points per output channel).
DCNv4 samples and weights the same 9 points per output channel (it only drops the softmax), so FlashInternImage
gets the same term.
"""
from __future__ import annotations

from collections.abc import Sequence


def dcn_core_flops(depths: Sequence[int], channels: int, height: int, width: int) -> int:
    """The DCN core cost of a 4-stride-pyramid backbone (stage i: C_i = channels * 2^i at stride 4 * 2^i) for a
    (height, width) input, a multiply-add counted as one FLOP."""
    total = 0
    for i, depth in enumerate(depths):
        scale = 4 * 2 ** i
        total += depth * 5 * (height / scale) * (width / scale) * 9 * (channels * 2 ** i)
    return int(total)
