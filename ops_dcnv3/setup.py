"""Build ops_dcnv3 and its compiled extension ops_dcnv3._C (CPU kernel, plus the CUDA kernel when possible).

    python setup.py build_ext --inplace         # in place, next to this file (what make.sh runs)

The build logic (CUDA toolkit discovery, default architectures, OpenMP flags) and the shared C++ sources are
ops_common's (ops_common/build.py, ops_common/src): the ops_common folder must sit next to this one. The CUDA kernel
is compiled whenever nvcc and a CUDA build of torch are present, even with no GPU visible. The extension needs GCC
or Clang (Linux, macOS); on Windows (MSVC) it is not built and DCNv3 runs the PyTorch core.
Environment: DCNV3_FORCE_CPU=1 builds the CPU kernel only; CUDA_HOME / CUDA_PATH, TORCH_CUDA_ARCH_LIST and MAX_JOBS
as described in ops_common/build.py.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root: ops_common

from ops_common.build import setup_op_package  # noqa: E402

if __name__ == '__main__':
    setup_op_package(__file__, 'DCNv3 deformable convolution core for InternImage: CPU and CUDA kernels, PyTorch '
                     'reference', force_cpu_env='DCNV3_FORCE_CPU')
