#!/usr/bin/env bash
# Build a compiled op package's extension (PACKAGE/_C, e.g. ops_dcnv3._C) in place, through a cache outside the
# repository.
#
# The cache key covers everything the binary depends on: the package's sources and build script, the torch
# version it compiles against, the CUDA compiler, and DCNV3_FORCE_CPU / TORCH_CUDA_ARCH_LIST. A fresh clone on
# the same machine (CI) reuses the binary instead of compiling (the CUDA kernels, for DCNv3) again.
#
# usage: tools/install/build_op.sh PYTHON PACKAGE      (PACKAGE: a folder at the repository root with a setup.py)
set -euo pipefail

PYTHON=$(command -v "${1:?usage: build_op.sh PYTHON PACKAGE}")
PYTHON=$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")
PACKAGE=${2:?usage: build_op.sh PYTHON PACKAGE}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE_ROOT=${INTERNIMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/internimage-det}
TAG=${PACKAGE#ops_}

cd "$ROOT/$PACKAGE"
key=$( {
    find src -type f \( -name '*.h' -o -name '*.cpp' -o -name '*.cu' -o -name '*.cuh' \) -print0 | sort -z \
        | xargs -0 sha256sum
    sha256sum setup.py
    "$PYTHON" -c 'import sys, torch; print(torch.__version__, torch.version.cuda, sys.version)'
    (command -v nvcc >/dev/null && nvcc --version | tail -n 2) || echo "no nvcc"
    echo "force_cpu=${DCNV3_FORCE_CPU:-0} arch=${TORCH_CUDA_ARCH_LIST:-default}"
} | sha256sum | cut -c1-16)
cache_dir="$CACHE_ROOT/$TAG/$key"
so_name=$("$PYTHON" -c 'import sysconfig; print("_C" + sysconfig.get_config_var("EXT_SUFFIX"))')

if [ -f "$so_name" ] && [ -f "$cache_dir/$so_name" ] && cmp -s "$so_name" "$cache_dir/$so_name"; then
    echo "[$TAG] extension up to date ($cache_dir)"
elif [ -f "$cache_dir/$so_name" ]; then
    cp "$cache_dir/$so_name" "$so_name"
    echo "[$TAG] extension restored from the build cache ($cache_dir)"
else
    echo "[$TAG] building the extension (cache key $key)"
    start=$(date +%s)
    "$PYTHON" setup.py build_ext --inplace
    mkdir -p "$cache_dir"
    cp "$so_name" "$cache_dir/$so_name.tmp" && mv "$cache_dir/$so_name.tmp" "$cache_dir/$so_name"
    echo "[$TAG] built in $(( $(date +%s) - start )) s, cached in $cache_dir"
fi
# A binary that cannot load (e.g. built against another torch) must fail here, not at first use.
(cd "$ROOT" && "$PYTHON" -c "import $PACKAGE._C")
