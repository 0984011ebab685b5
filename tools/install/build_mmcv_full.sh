#!/usr/bin/env bash
# Build (once) and install mmcv-full 1.7.2 with its compiled ops into the given Python environment.
#
# mmcv-full 1.7.2 is published on PyPI only as a source distribution. The built wheel is cached
# outside the repository, keyed by the exact torch version (and CUDA tag) it was compiled against, the Python
# version (cp311, cp312, ...) and CPU-only vs CUDA ops, because a wheel built against one torch or Python must never
# be loaded by another (ABI mismatch). A second run with the same torch and Python finds the wheel and installs it
# in seconds.
#
# usage: tools/install/build_mmcv_full.sh PYTHON
# environment: FORCE_CUDA=1 and TORCH_CUDA_ARCH_LIST (CUDA ops without a GPU, e.g. "8.0;9.0"), MAX_JOBS,
#              MMCV_SDIST (build from that source archive), MMCV_BUILD_ONLY=1 (cache the wheel, install nothing)
set -euo pipefail

PYTHON=$(command -v "${1:?usage: build_mmcv_full.sh PYTHON}")
PYTHON=$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")
MMCV_VERSION=1.7.2
CACHE_ROOT=${INTERNIMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/internimage-det}
PIP="$(cd "$(dirname "$0")" && pwd)/pip_quiet.sh"   # pip without the noise, with pip's exit status

torch_version=$("$PYTHON" -c 'import torch; print(torch.__version__)')
py_tag=$("$PYTHON" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
# CUDA ops are compiled only where torch sees a GPU or FORCE_CUDA=1: a CPU-ops wheel must not be reused there.
ops_tag=$("$PYTHON" -c 'import os, torch; print("cuda" if torch.cuda.is_available() or os.environ.get("FORCE_CUDA") == "1" else "cpu")')
# A CUDA wheel holds device code for the architectures it was compiled for only (TORCH_CUDA_ARCH_LIST, or the
# visible GPU's when unset): the list is part of the key, so an sm_90-only wheel is never reused for an sm_80 GPU.
if [ "$ops_tag" = cuda ]; then
    arch_key=${TORCH_CUDA_ARCH_LIST:-local}
    ops_tag="cuda-sm${arch_key//[^0-9A-Za-z+]/_}"
fi
wheel_dir="$CACHE_ROOT/wheels/mmcv-full-$MMCV_VERSION/torch-$torch_version-$py_tag-$ops_tag"

installed=$("$PYTHON" - <<PY
import importlib.metadata as md
try:
    v = md.version('mmcv-full')
except md.PackageNotFoundError:
    v = ''
ok = False
if v == '$MMCV_VERSION':
    try:
        import mmcv.ops  # noqa: F401  (fails if the compiled ops are missing or were built for another torch)
        ok = True
    except Exception:
        pass
print('yes' if ok else 'no')
PY
)
if [ "$installed" = yes ] && [ -f "$wheel_dir/BUILT_AGAINST" ] \
   && [ "$(cat "$wheel_dir/BUILT_AGAINST")" = "$torch_version" ]; then
    echo "[mmcv-full] $MMCV_VERSION with ops already installed (built against torch $torch_version)"
    exit 0
fi

if ! ls "$wheel_dir"/mmcv_full-"$MMCV_VERSION"-*.whl >/dev/null 2>&1; then
    echo "[mmcv-full] no cached wheel for torch $torch_version ($py_tag): building from source (CPU ops: ~4 min on 2 cores; CUDA ops: ~40 min)"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    # MMCV_SDIST=path/to/mmcv-full-1.7.2.tar.gz builds from that file instead of downloading it (a machine without
    # a package registry).
    download_sdist() {  # PYTHON [PIP OPTION...]: pip download of the source archive into $work
        bash "$PIP" "$1" download --quiet --no-deps --no-binary :all: "${@:2}" "mmcv-full==$MMCV_VERSION" -d "$work"
    }
    if [ -n "${MMCV_SDIST:-}" ]; then
        cp "$MMCV_SDIST" "$work/mmcv-full-$MMCV_VERSION.tar.gz"
    elif "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 13))'; then
        # On Python 3.13+ pip cannot fetch it: pip reads an archive's metadata by running its setup.py, whose
        # get_version() Python 3.13 breaks (PEP 667; patched below, for the build). The archive is the same file
        # for every Python, so a Python 3.12 or 3.11 on this machine fetches it, in pip's build isolation with
        # setuptools < 82 (the constraints file; setup.py imports pkg_resources).
        fetched=""
        for other in python3.12 python3.11; do
            if other_python=$(bash "$(dirname "$PIP")/find_python.sh" "$other" 2>/dev/null) \
                    && "$other_python" -m pip --version >/dev/null 2>&1 \
                    && PIP_CONSTRAINT="$(cd "$(dirname "$PIP")/../.." && pwd)/requirements/constraints.txt" \
                       download_sdist "$other_python"; then
                fetched=$other_python
                break
            fi
        done
        if [ -z "$fetched" ]; then
            echo "[mmcv-full] on Python 3.13+ pip cannot read mmcv-full $MMCV_VERSION's metadata (its setup.py reads" \
                 "exec's locals(), PEP 667), and no Python 3.12/3.11 with pip was found to fetch it; download it" \
                 "with one (\`python3.12 -m pip download --no-deps --no-binary :all: mmcv-full==$MMCV_VERSION" \
                 "-d DIR\`) and pass MMCV_SDIST=DIR/mmcv-full-$MMCV_VERSION.tar.gz" >&2
            exit 1
        fi
        echo "[mmcv-full] source archive fetched with $fetched (Python 3.13's pip cannot read its metadata)"
    else
        download_sdist "$PYTHON" --no-build-isolation  # this environment's setuptools < 82 reads the metadata
    fi
    tar -xzf "$work/mmcv-full-$MMCV_VERSION.tar.gz" -C "$work"
    src="$work/mmcv-full-$MMCV_VERSION"
    [ -f "$src/setup.py" ] || { echo "[mmcv-full] no mmcv-full-$MMCV_VERSION/setup.py in the source archive" >&2; exit 1; }
    # PATCH: torch >= 2.x headers require C++20 ("C++20 or later compatible compiler is required to
    # use ATen"), but mmcv-full 1.7.2's setup.py hard-codes -std=c++17 for every torch newer than
    # 1.12.1. Raise exactly those flags to C++20; nothing else in mmcv's sources is touched.
    n=$(grep -c "'-std=c++17'" "$src/setup.py")
    sed -i "s/'-std=c++17'/'-std=c++20'/g" "$src/setup.py"
    echo "[mmcv-full] raised $n '-std=c++17' flags to '-std=c++20' in setup.py"
    # PATCH: setup.py's get_version() exec()s mmcv/version.py and reads `locals()['__version__']`, which Python 3.13
    # no longer fills in from exec (PEP 667: KeyError: '__version__'). Read it through globals() instead, on every
    # Python (the same version string; nothing else changes).
    sed -i -e "s/exec(compile(f.read(), version_file, 'exec'))$/exec(compile(f.read(), version_file, 'exec'), globals())/" \
        -e "s/return locals()\['__version__'\]/return globals()['__version__']/" "$src/setup.py"
    grep -q "return globals()\['__version__'\]" "$src/setup.py" \
        || { echo "[mmcv-full] setup.py's get_version() is not as expected: cannot patch it" >&2; exit 1; }
    echo "[mmcv-full] setup.py reads its version through globals() (Python 3.13)"
    mkdir -p "$wheel_dir"
    # MMCV_WITH_OPS=1: build the compiled ops (mmcv.ops.nms, RoIAlign, ...). CUDA ops are built only
    # where torch sees a GPU (or FORCE_CUDA=1 is set by the caller); CPU ops always.
    # --no-build-isolation: compile against the torch already in this environment.
    # Python's CFLAGS (-O3 -DNDEBUG ...) with -g0 appended: debug information for ~140 translation units of torch
    # templates costs compile time and most of the wheel's size, and nothing at run time uses it (release_cflags.sh
    # says why the flags must be spelled out).
    cflags=$(bash "$(dirname "$PIP")/release_cflags.sh" "$PYTHON")
    echo "[mmcv-full] CFLAGS: $cflags"
    build_start=$(date +%s)
    if [ "${ops_tag%%-*}" = cuda ]; then
        # The toolkit nvcc belongs to: torch guesses CUDA_HOME from nvcc's folder (/usr/local/bin/nvcc gives
        # /usr/local, whose include/ lacks the CUDA headers, so g++ would pick pip's partial copies below).
        if [ -z "${CUDA_HOME:-}" ]; then
            for candidate in "$(dirname "$(dirname "$(readlink -f "$(command -v nvcc || echo /nonexistent/bin/nvcc)")")")" \
                             /usr/local/cuda; do
                if [ -f "$candidate/include/cuda_runtime_api.h" ]; then export CUDA_HOME=$candidate; break; fi
            done
        fi
        echo "[mmcv-full] CUDA toolkit: ${CUDA_HOME:-as torch finds it}"
        # torch's CUDA headers include cuSPARSE/cuBLAS headers that pip's nvidia-* packages ship (under
        # site-packages/nvidia/cu13/include, or nvidia/<lib>/include for CUDA 12) and a bare toolkit may lack.
        nvidia_includes=$("$PYTHON" - <<'PY'
import glob, os, sysconfig
root = os.path.join(sysconfig.get_paths()['purelib'], 'nvidia')
print(':'.join(sorted(d for d in glob.glob(os.path.join(root, '*', 'include')) if os.path.isdir(d))))
PY
)
        [ -z "$nvidia_includes" ] || export CPATH="$nvidia_includes${CPATH:+:$CPATH}"
    fi
    # Through pch_cxx.sh: the ATen headers every op source starts with (pytorch_cpp_helper.hpp) are parsed once, not
    # ~60 times (the same objects, built ~3x faster; pch_cxx.sh says how). $CXX, if set, stays the compiler.
    real_cxx=${CXX:-c++}  # read before the line below sets CXX (bash expands prefix assignments in order)
    (cd "$src" && MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} CFLAGS="$cflags" \
        CXX="$(dirname "$PIP")/pch_cxx.sh" PCH_REAL_CXX="$real_cxx" PCH_HEADER=pytorch_cpp_helper.hpp \
        bash "$PIP" "$PYTHON" wheel --no-deps --no-build-isolation -w "$wheel_dir" .)
    echo "[mmcv-full] built in $(( $(date +%s) - build_start )) s:" \
         "$(du -h "$wheel_dir"/mmcv_full-"$MMCV_VERSION"-*.whl | cut -f1) ($ops_tag)"
    echo "$torch_version" > "$wheel_dir/BUILT_AGAINST"
fi

# MMCV_BUILD_ONLY=1: build (or find) the cached wheel and stop; the environment is left as it is (a CUDA build for
# another machine, from a venv that tests are using).
if [ "${MMCV_BUILD_ONLY:-0}" = 1 ]; then
    echo "[mmcv-full] wheel: $(ls "$wheel_dir"/mmcv_full-"$MMCV_VERSION"-*.whl) (MMCV_BUILD_ONLY=1: not installed)"
    exit 0
fi
bash "$PIP" "$PYTHON" install --quiet --no-deps --force-reinstall "$wheel_dir"/mmcv_full-"$MMCV_VERSION"-*.whl
"$PYTHON" - <<'PY'
import torch
from mmcv.ops import RoIAlign, nms
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.], [50., 50., 60., 60.]])
scores = torch.tensor([0.9, 0.8, 0.7])
_, keep = nms(boxes, scores, iou_threshold=0.5)
assert keep.tolist() == [0, 2], keep
feat = torch.arange(16.).view(1, 1, 4, 4)
out = RoIAlign((2, 2), spatial_scale=1.0, sampling_ratio=1, aligned=True)(feat, torch.tensor([[0., 0., 0., 4., 4.]]))
assert out.shape == (1, 1, 2, 2) and torch.isfinite(out).all()
print('[mmcv-full] mmcv.ops.nms and RoIAlign import and run')
PY
