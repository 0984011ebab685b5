"""Build ops_roialign._C in place: a multi-threaded CPU RoIAlign with mmcv's semantics.

    python setup.py build_ext --inplace        # what tools/install/build_op.sh runs (with a build cache)
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root: ops_common

from ops_common.build import setup_op_package  # noqa: E402

if __name__ == '__main__':
    setup_op_package(__file__, 'Multi-threaded CPU RoIAlign with mmcv semantics', msvc=True)
