#!/usr/bin/env bash
# A C++ compiler wrapper (CXX=tools/install/pch_cxx.sh) that precompiles one shared header once per set of compile
# flags, then runs the compile exactly as it was asked for.
#
# Why: every one of mmcv-full's ~60 op sources starts with `#include "pytorch_cpp_helper.hpp"`, which pulls in
# ATen (torch/types.h); parsing it is ~7 of the ~10 s each source costs at -O3 on this machine. GCC's precompiled
# headers remove that: a directory `<header>.gch/` next to the header holds one precompiled header per flag set, and
# GCC uses a valid one by itself wherever the header is the first thing a source includes (anywhere else, or with
# other flags, GCC ignores it and reads the header as usual). The command line is not changed, so the object code
# is the same (checked: tests/tools/install/test_pch_cxx.py compares the disassembly).
#
# environment: PCH_HEADER  the header's file name, found in the compile's -I folders (unset: plain pass-through)
#              PCH_REAL_CXX the compiler to run (default c++)
set -euo pipefail

real_cxx=${PCH_REAL_CXX:-c++}
header=${PCH_HEADER:-}
if [ "$(readlink -f "$(command -v "$real_cxx" || echo "$real_cxx")")" = "$(readlink -f "$0")" ]; then
    echo "pch_cxx.sh: PCH_REAL_CXX names this wrapper itself; set it to the compiler (e.g. c++)" >&2
    exit 2
fi
[ -n "$header" ] || exec "$real_cxx" "$@"

# The source being compiled (a .cpp/.cc/.cxx that exists), the include folders, and the flags the precompiled
# header must share with it: everything but the dependency-file, output and source arguments.
source_file=""
include_dirs=()
pch_flags=()
args=("$@")
i=0
while [ $i -lt ${#args[@]} ]; do
    arg=${args[$i]}
    case "$arg" in
        -MF|-MT|-MQ|-o) i=$((i + 2)); continue ;;
        -MMD|-MD|-c) ;;
        -I) include_dirs+=("${args[$((i + 1))]}"); pch_flags+=("$arg" "${args[$((i + 1))]}"); i=$((i + 2)); continue ;;
        -I*) include_dirs+=("${arg#-I}"); pch_flags+=("$arg") ;;
        *.cpp|*.cc|*.cxx) if [ -f "$arg" ]; then source_file=$arg; else pch_flags+=("$arg"); fi ;;
        *) pch_flags+=("$arg") ;;
    esac
    i=$((i + 1))
done

# Only a compile of a source whose first #include is the header can use it (GCC's rule); anything else (linking,
# `-v`, other sources) goes straight through.
if [ -n "$source_file" ] && grep -m1 '^[[:space:]]*#[[:space:]]*include' "$source_file" \
        | grep -q "[\"<]$header[\">]"; then
    header_path=""
    for dir in "${include_dirs[@]}"; do
        if [ -f "$dir/$header" ]; then header_path="$dir/$header"; break; fi
    done
    if [ -n "$header_path" ]; then
        pch_dir="$header_path.gch"        # only precompiled headers in here: GCC tries every file in it
        work_dir="$header_path.pch-build"  # the lock and the compiler's messages
        key=$( { printf '%s\n' "$real_cxx" "${pch_flags[@]}"; "$real_cxx" --version | sed -n 1p; \
                 sha256sum "$header_path"; } | sha256sum | cut -c1-16)
        pch="$pch_dir/$key.gch"
        if [ ! -f "$pch" ]; then
            mkdir -p "$pch_dir" "$work_dir"
            # Parallel compiles (ninja -j) wait for the one that builds it; a failed build leaves no file, and the
            # compile below then reads the header as usual.
            (
                flock 9
                if [ ! -f "$pch" ]; then
                    if "$real_cxx" "${pch_flags[@]}" -x c++-header "$header_path" -o "$work_dir/$key.gch.tmp" 2>"$work_dir/$key.log"; then
                        mv "$work_dir/$key.gch.tmp" "$pch"
                    else
                        rm -f "$work_dir/$key.gch.tmp"
                        echo "[pch_cxx] could not precompile $header_path (see $work_dir/$key.log); compiling without it" >&2
                    fi
                fi
            ) 9>"$work_dir/lock"
        fi
    fi
fi
exec "$real_cxx" "$@"
