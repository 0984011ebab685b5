"""Build ops_roialign._C in place: a multi-threaded CPU RoIAlign with mmcv's semantics.

    python setup.py build_ext --inplace        # what tools/install/build_op.sh runs (with a build cache)
"""
from __future__ import annotations

import os
import sys

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))


def make_extensions():
    from torch.utils.cpp_extension import BuildExtension, CppExtension

    # -fopenmp: at::parallel_for only runs in parallel when the extension itself is compiled with OpenMP.
    if sys.platform.startswith('linux'):
        cxx_flags, link_flags = ['-O3', '-fopenmp'], ['-fopenmp']
    elif sys.platform == 'win32':
        cxx_flags, link_flags = ['/O2', '/openmp'], []
    else:
        cxx_flags, link_flags = ['-O3'], []
    extension = CppExtension('ops_roialign._C', ['src/roi_align_cpu.cpp'], extra_compile_args={'cxx': cxx_flags},
                             extra_link_args=link_flags)
    return [extension], {'build_ext': BuildExtension}


os.chdir(HERE)  # sources are given relative to this file
ext_modules, cmdclass = make_extensions()
setup(
    name='ops_roialign',
    version='1.0',
    description='Multi-threaded CPU RoIAlign with mmcv semantics',
    packages=['ops_roialign'],
    package_dir={'ops_roialign': '.'},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    zip_safe=False,
)
