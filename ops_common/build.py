"""The build helper of the op packages' compiled extensions (ops_dcnv3, ops_dcnv4, ops_roialign): CUDA toolkit
discovery, default architectures, compiler flags, and ops_common/src on the include path.

Each package's setup.py loads this file by path (:func:`load`), so a package builds on its own with
`python setup.py build_ext --inplace` (its make.sh) as long as ops_common sits next to it; nothing here is imported
at run time. CUDA_HOME / CUDA_PATH name the toolkit; TORCH_CUDA_ARCH_LIST overrides the default architectures
(Volta..Hopper minus what the installed nvcc dropped: nvcc 13 no longer builds Volta, sm_70, so there the default
is Turing..Hopper); MAX_JOBS limits parallel compile jobs.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys

COMMON_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'src')
WANTED_ARCHS = ['7.0', '7.5', '8.0', '8.6', '8.9', '9.0']  # Volta .. Hopper


def _log(message: str, package: str) -> None:
    print(f'[{package}] {message}', flush=True)


def _is_toolkit_root(root: str) -> bool:
    """A CUDA toolkit root: bin/nvcc and the CUDA runtime library the extension links against."""
    if not root or not os.path.isfile(os.path.join(root, 'bin', 'nvcc')):
        return False
    lib_dirs = [os.path.join(root, 'lib64'), os.path.join(root, 'lib'), os.path.join(root, 'lib', 'x64')]
    targets = os.path.join(root, 'targets')
    if os.path.isdir(targets):
        lib_dirs += [os.path.join(targets, t, 'lib') for t in os.listdir(targets)]
    return any(os.path.isdir(d) and any(f.startswith(('libcudart.so', 'cudart.lib')) for f in os.listdir(d))
               for d in lib_dirs)


def _roots_behind(nvcc: str, depth: int = 0) -> list[str]:
    """Toolkit roots an `nvcc` on PATH leads to: through symlinks, and through wrapper scripts that exec another
    nvcc (e.g. `exec /usr/local/cuda-13.0/bin/nvcc "$@"`)."""
    real = os.path.realpath(nvcc)
    roots = [os.path.dirname(os.path.dirname(real))]
    if depth < 3:
        try:
            with open(real, 'rb') as handle:
                head = handle.read(4096)
        except OSError:
            head = b''
        if head.startswith(b'#!'):  # a script: follow the nvcc paths it names
            for target in re.findall(r'''(/[^\s'"]*/bin/nvcc)\b''', head.decode('utf-8', 'replace')):
                roots += _roots_behind(target, depth + 1)
    return roots


def find_cuda_home() -> str | None:
    candidates = [os.environ.get('CUDA_HOME'), os.environ.get('CUDA_PATH')]
    nvcc = shutil.which('nvcc')
    if nvcc:
        candidates += _roots_behind(nvcc)
    candidates += ['/usr/local/cuda']
    for root in candidates:
        if root and _is_toolkit_root(root):
            return os.path.realpath(root) if root != os.environ.get('CUDA_HOME') else root
    return None


def default_arch_list(cuda_home: str) -> str:
    """Volta..Hopper, without the architectures this nvcc no longer supports; PTX of the newest for later GPUs."""
    try:
        out = subprocess.run([os.path.join(cuda_home, 'bin', 'nvcc'), '--list-gpu-arch'], capture_output=True,
                             text=True, check=True).stdout
        supported = {f'{int(m) // 10}.{int(m) % 10}' for m in re.findall(r'compute_(\d+)', out)}
    except (OSError, subprocess.CalledProcessError):  # old nvcc without --list-gpu-arch: it has them all
        supported = set(WANTED_ARCHS)
    archs = [a for a in WANTED_ARCHS if a in supported] or WANTED_ARCHS[-1:]
    return ';'.join(archs) + '+PTX'


def extension_kind(force_cpu_env: str | None) -> tuple[str, str | None, str]:
    """('cuda', CUDA_HOME, reason) or ('cpu', None, reason); decided before torch's build helpers are imported,
    because torch.utils.cpp_extension fixes CUDA_HOME at import time."""
    if force_cpu_env and os.environ.get(force_cpu_env, '0') not in ('', '0'):
        return 'cpu', None, f'{force_cpu_env} is set'
    import torch
    if torch.version.cuda is None:
        return 'cpu', None, f'torch {torch.__version__} is not a CUDA build'
    cuda_home = find_cuda_home()
    if cuda_home is None:
        return 'cpu', None, 'no CUDA toolkit found (set CUDA_HOME to the folder holding bin/nvcc and lib64)'
    return 'cuda', cuda_home, f'CUDA toolkit at {cuda_home}, torch CUDA {torch.version.cuda}'


def make_extensions(name: str, sources: tuple[str, ...], cuda_sources: tuple[str, ...] = (),
                    include_dirs: tuple[str, ...] = (), force_cpu_env: str | None = None, msvc: bool = False):
    """The extension `name` from `sources` (+ `cuda_sources` when CUDA can be built), with ops_common/src on the
    include path, and the cmdclass to build it. `force_cpu_env` names the variable that forces a CPU-only build;
    `msvc`: the sources also build with MSVC (no GCC/Clang vector extensions), so Windows gets the extension too."""
    package = name.split('.')[0]
    include_dirs = (COMMON_SRC, *include_dirs)
    if sys.platform == 'win32' and not msvc:
        # The CPU kernels are written with GCC/Clang vector extensions and target attributes, which MSVC lacks.
        _log(f'not building {name}: the compiled extension needs GCC or Clang, and MSVC is the compiler on '
             f'Windows. {package} installs without it and runs its pure-PyTorch core (it warns once).', package)
        return [], {}
    kind, cuda_home, reason = extension_kind(force_cpu_env) if cuda_sources else ('cpu', None, 'no CUDA sources')
    if kind == 'cuda':
        os.environ['CUDA_HOME'] = cuda_home
        os.environ.setdefault('TORCH_CUDA_ARCH_LIST', default_arch_list(cuda_home))
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    # -fopenmp: at::parallel_for is a header template that only runs in parallel when the extension itself is
    # compiled with OpenMP (it then shares torch's OpenMP runtime, libgomp.so.1, already loaded by libtorch_cpu).
    if sys.platform.startswith('linux'):
        cxx_flags, link_flags = ['-O3', '-fopenmp'], ['-fopenmp']
    elif sys.platform == 'win32':
        cxx_flags, link_flags = ['/O2', '/openmp'], []
    else:  # macOS: torch uses its native thread pool there; omp simd hints only
        cxx_flags, link_flags = ['-O3', '-fopenmp-simd'], []
    if kind == 'cuda':
        _log(f'building the CPU and CUDA kernels ({reason}; TORCH_CUDA_ARCH_LIST={os.environ["TORCH_CUDA_ARCH_LIST"]})',
             package)
        extension = CUDAExtension(
            name, list(sources + cuda_sources), define_macros=[('WITH_CUDA', None)], include_dirs=list(include_dirs),
            extra_compile_args={'cxx': cxx_flags, 'nvcc': ['-O3', '-lineinfo']},
            extra_link_args=link_flags)
    else:
        _log(f'building the CPU kernel only ({reason})', package)
        extension = CppExtension(name, list(sources), include_dirs=list(include_dirs),
                                 extra_compile_args={'cxx': cxx_flags}, extra_link_args=link_flags)
    return [extension], {'build_ext': BuildExtension}




def setup_op_package(setup_file: str, description: str, force_cpu_env: str | None = None, msvc: bool = False) -> None:
    """setuptools' setup() of the op package whose setup.py is `setup_file`: the package is its folder (with its
    `functions` and `modules` subpackages where present), the extension `<package>._C` is built from its
    src/*.cpp, src/cpu/*.cpp and src/host/*.cpp, plus src/cuda/*.cu when CUDA can be built, with src/ on the
    include path."""
    from setuptools import setup

    here = os.path.dirname(os.path.abspath(setup_file))
    package = os.path.basename(here)
    os.chdir(here)  # setuptools takes sources relative to the package folder
    sources = tuple(sorted(glob.glob('src/*.cpp') + glob.glob('src/cpu/*.cpp') + glob.glob('src/host/*.cpp')))
    cuda_sources = tuple(sorted(glob.glob('src/cuda/*.cu')))
    ext_modules, cmdclass = make_extensions(f'{package}._C', sources, cuda_sources, (os.path.join(here, 'src'),),
                                            force_cpu_env, msvc)
    subpackages = [sub for sub in ('functions', 'modules') if os.path.isdir(sub)]
    setup(
        name=package,
        version='1.0',
        description=description,
        packages=[package] + [f'{package}.{sub}' for sub in subpackages],
        package_dir={package: '.', **{f'{package}.{sub}': sub for sub in subpackages}},
        ext_modules=ext_modules,
        cmdclass=cmdclass,
        zip_safe=False,
    )
