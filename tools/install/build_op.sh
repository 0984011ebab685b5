#!/usr/bin/env bash
# Build a compiled op package's extension (PACKAGE._C: ops_dcnv3, ops_dcnv4, ops_roialign) in place, through a
# cache outside the repository.
#
# The cache key covers everything the binary depends on: the package's sources and setup.py, the foundation every
# op builds on (ops_common/src and ops_common/build.py), those of any SHARED_PACKAGE named, the torch version it compiles against, the CUDA compiler, and <OP>_FORCE_CPU (DCNV3_FORCE_CPU, DCNV4_FORCE_CPU) /
# TORCH_CUDA_ARCH_LIST and the compiler flags. A fresh clone on the same machine (CI) reuses the binary instead of compiling the CUDA
# kernels again.
#
# usage: tools/install/build_op.sh PYTHON PACKAGE [SHARED_PACKAGE...]
#        (each a folder at the repository root with a setup.py; e.g. `build_op.sh .venv/bin/python ops_dcnv4 ops_dcnv3`)
set -euo pipefail

usage="usage: build_op.sh PYTHON PACKAGE [SHARED_PACKAGE...]"
PYTHON=$(command -v "${1:?$usage}")
PYTHON=$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")
PACKAGE=${2:?$usage}
shift 2
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE_ROOT=${INTERNIMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/internimage-det}
OP=${PACKAGE#ops_}                                   # dcnv3, dcnv4, roialign
FORCE_CPU_VAR=$(echo "$OP" | tr '[:lower:]' '[:upper:]')_FORCE_CPU
source_dirs=(src ../ops_common/src)
setup_files=(setup.py ../ops_common/build.py)
for shared in "$@"; do
    source_dirs+=("../$shared/src")
    setup_files+=("../$shared/setup.py")
done
for package in "$PACKAGE" "$@"; do
    [ -f "$ROOT/$package/setup.py" ] || { echo "build_op.sh: no $package/setup.py in $ROOT" >&2; exit 2; }
done

cd "$ROOT/$PACKAGE"
cflags=$(bash "$ROOT/tools/install/release_cflags.sh" "$PYTHON")
key=$( {
    for dir in "${source_dirs[@]}"; do
        find "$dir" -type f \( -name '*.h' -o -name '*.cpp' -o -name '*.cu' -o -name '*.cuh' \) -print0 | sort -z \
            | xargs -0 sha256sum
    done
    sha256sum "${setup_files[@]}"
    "$PYTHON" -c 'import sys, torch; print(torch.__version__, torch.version.cuda, sys.version)'
    (command -v nvcc >/dev/null && nvcc --version | tail -n 2) || echo "no nvcc"
    echo "force_cpu=${!FORCE_CPU_VAR:-0} arch=${TORCH_CUDA_ARCH_LIST:-default} cflags=$cflags"
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
    CFLAGS="$cflags" "$PYTHON" setup.py build_ext --inplace   # Python's release flags, -g0 (release_cflags.sh)
    mkdir -p "$cache_dir"
    cp "$so_name" "$cache_dir/$so_name.tmp" && mv "$cache_dir/$so_name.tmp" "$cache_dir/$so_name"
    echo "[$OP] built in $(( $(date +%s) - start )) s, cached in $cache_dir"
fi
# A binary that cannot load (e.g. built against another torch) must fail here, not at first use.
(cd "$ROOT" && "$PYTHON" -c "import $PACKAGE._C")
