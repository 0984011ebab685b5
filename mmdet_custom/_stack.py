"""Whether the mmcv/mmdet stack is installed at all (decides if importing mmdet_custom registers anything).

Installed means found on the path, not importable: a broken install still goes through mmcv_custom's stack check
and its one-line error. Only where neither package is installed (a bare GPU machine, a detectron2 or plain PyTorch
project) does ``import mmdet_custom`` skip the check and the registration, leaving the plain-PyTorch backbones.
"""
from __future__ import annotations

import importlib.util


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a finder refusing the name, or a module without a spec
        return False


MMDET_STACK_INSTALLED: bool = _installed('mmcv') or _installed('mmdet')
