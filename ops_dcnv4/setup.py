"""Build ops_dcnv4 and its compiled extension ops_dcnv4._C (CPU kernel and the CPU harness of the CUDA kernel
bodies, plus the CUDA kernel when possible).

    python setup.py build_ext --inplace         # in place, next to this file (what make.sh runs)

The extension shares the DCNv3 sampling math and CPU vector loops (ops_dcnv3/src) and the build logic of
ops_dcnv3/setup.py (CUDA toolkit discovery, default architectures Volta or Turing..Hopper, OpenMP flags): the ops_dcnv3
folder must sit next to this one. Environment: DCNV4_FORCE_CPU=1 builds the CPU kernel only; CUDA_HOME / CUDA_PATH,
TORCH_CUDA_ARCH_LIST and MAX_JOBS as for ops_dcnv3.
"""
from __future__ import annotations

import importlib.util
import os

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
DCNV3_DIR = os.path.join(os.path.dirname(HERE), 'ops_dcnv3')


def _dcnv3_build_helpers():
    """ops_dcnv3/setup.py as a module (its setup() call only runs as a script)."""
    spec = importlib.util.spec_from_file_location('ops_dcnv3_setup', os.path.join(DCNV3_DIR, 'setup.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if __name__ == '__main__':
    os.chdir(HERE)  # sources are given relative to this file
    ext_modules, cmdclass = _dcnv3_build_helpers().make_extensions(
        name='ops_dcnv4._C',
        sources=('src/vision.cpp', 'src/cpu/dcnv4_cpu.cpp', 'src/cpu/dcnv4_cuda_bodies_host.cpp'),
        cuda_sources=('src/cuda/dcnv4_cuda.cu',),
        include_dirs=(os.path.join(DCNV3_DIR, 'src'), os.path.join(HERE, 'src')),
        force_cpu_env='DCNV4_FORCE_CPU')
    setup(
        name='ops_dcnv4',
        version='1.0',
        description='DCNv4 deformable convolution core for FlashInternImage: CPU and CUDA kernels, PyTorch reference',
        packages=['ops_dcnv4', 'ops_dcnv4.functions', 'ops_dcnv4.modules'],
        package_dir={'ops_dcnv4': '.', 'ops_dcnv4.functions': 'functions', 'ops_dcnv4.modules': 'modules'},
        ext_modules=ext_modules,
        cmdclass=cmdclass,
        zip_safe=False,
    )
