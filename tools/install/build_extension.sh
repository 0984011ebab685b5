#!/usr/bin/env bash
# Build a compiled operator extension (PACKAGE._C: ops_dcnv3 or ops_dcnv4) in place, through a cache outside the
# repository.
#
# The cache key covers everything the binary depends on: the package's sources and build script, the DCNv3 sources
# and build script that every operator shares (sampling math, CPU vector loops, make_extensions), the torch version
# it compiles against, the CUDA compiler, and <OP>_FORCE_CPU (DCNV3_FORCE_CPU, DCNV4_FORCE_CPU) /
# TORCH_CUDA_ARCH_LIST. A fresh clone on the same machine (CI) reuses the binary instead of compiling the CUDA
# kernels again.
#
# usage: tools/install/build_extension.sh PYTHON PACKAGE
set -euo pipefail

PYTHON=$(command -v "${1:?usage: build_extension.sh PYTHON PACKAGE}")
PYTHON=$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")
PACKAGE=${2:?usage: build_extension.sh PYTHON PACKAGE}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE_ROOT=${INTERNIMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/internimage-det}
OP=${PACKAGE#ops_}                                   # dcnv3, dcnv4
FORCE_CPU_VAR=$(echo "$OP" | tr '[:lower:]' '[:upper:]')_FORCE_CPU
[ -f "$ROOT/$PACKAGE/setup.py" ] || { echo "build_extension.sh: no $PACKAGE/setup.py in $ROOT" >&2; exit 2; }

cd "$ROOT/$PACKAGE"
key=$( {
    for dir in src ../ops_dcnv3/src; do
        find "$dir" -type f \( -name '*.h' -o -name '*.cpp' -o -name '*.cu' -o -name '*.cuh' \) -print0 | sort -z \
            | xargs -0 sha256sum
    done
    sha256sum setup.py ../ops_dcnv3/setup.py
    "$PYTHON" -c 'import sys, torch; print(torch.__version__, torch.version.cuda, sys.version)'
    (command -v nvcc >/dev/null && nvcc --version | tail -n 2) || echo "no nvcc"
    echo "force_cpu=${!FORCE_CPU_VAR:-0} arch=${TORCH_CUDA_ARCH_LIST:-default}"
} | sha256sum | cut -c1-16)
cache_dir="$CACHE_ROOT/$OP/$key"
so_name=$("$PYTHON" -c 'import sysconfig; print("_C" + sysconfig.get_config_var("EXT_SUFFIX"))')

if [ -f "$so_name" ] && [ -f "$cache_dir/$so_name" ] && cmp -s "$so_name" "$cache_dir/$so_name"; then
    echo "[$OP] extension up to date ($cache_dir)"
elif [ -f "$cache_dir/$so_name" ]; then
    cp "$cache_dir/$so_name" "$so_name"
    echo "[$OP] extension restored from the build cache ($cache_dir)"
else
    echo "[$OP] building the extension (cache key $key)"
    start=$(date +%s)
    "$PYTHON" setup.py build_ext --inplace
    mkdir -p "$cache_dir"
    cp "$so_name" "$cache_dir/$so_name.tmp" && mv "$cache_dir/$so_name.tmp" "$cache_dir/$so_name"
    echo "[$OP] built in $(( $(date +%s) - start )) s, cached in $cache_dir"
fi
# A binary that cannot load (e.g. built against another torch) must fail here, not at first use.
(cd "$ROOT" && "$PYTHON" -c "import $PACKAGE._C")
