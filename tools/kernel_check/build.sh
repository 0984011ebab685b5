#!/usr/bin/env bash
# Build (once per source content) the host check of the CUDA kernel bodies, torch-free, as C++17 under
# AddressSanitizer + UndefinedBehaviorSanitizer (signed overflow included; every finding is fatal). Prints the
# binary's path. The build is cached under build/kernel_check/<hash of the sources and flags>.
#   usage: tools/kernel_check/build.sh [CXX]      (default: $CXX or g++)
set -euo pipefail
cd "$(dirname "$0")/../.."
cxx=${1:-${CXX:-g++}}
flags=(-std=c++17 -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
       -Wall -Wextra -Werror -Iops_common/src -Iops_dcnv3/src -Iops_dcnv4/src)
sources=(tools/kernel_check/cuda_bodies_check.cpp ops_common/src/dcn_math.h ops_dcnv3/src/common/*.h
         ops_dcnv4/src/common/*.h ops_dcnv4/src/dcnv4_geometry.h)
key=$( { "$cxx" --version | head -1; echo "${flags[*]}"; cat "${sources[@]}"; } | sha256sum | cut -c1-16)
out=build/kernel_check/$key/cuda_bodies_check
if [ ! -x "$out" ]; then
    mkdir -p "$(dirname "$out")"
    "$cxx" "${flags[@]}" tools/kernel_check/cuda_bodies_check.cpp -o "$out.tmp" >&2
    mv "$out.tmp" "$out"
fi
echo "$out"
