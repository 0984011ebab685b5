"""Build ops_dcnv4 and its compiled extension ops_dcnv4._C (CPU kernel and the CPU harness of the CUDA kernel
bodies, plus the CUDA kernel when possible).

    python setup.py build_ext --inplace         # in place, next to this file (what make.sh runs)

The build logic and the shared C++ sources are ops_common's (ops_common/build.py, ops_common/src): the ops_common
folder must sit next to this one. Environment: DCNV4_FORCE_CPU=1 builds the CPU kernel only; CUDA_HOME / CUDA_PATH,
TORCH_CUDA_ARCH_LIST and MAX_JOBS as described in ops_common/build.py.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root: ops_common

from ops_common.build import setup_op_package  # noqa: E402

if __name__ == '__main__':
    setup_op_package(__file__, 'DCNv4 deformable convolution core for FlashInternImage: CPU and CUDA kernels, '
                     'PyTorch reference', force_cpu_env='DCNV4_FORCE_CPU')
