#!/usr/bin/env bash
# Print the C/C++ flags the compiled extensions (mmcv-full's ops, ops_dcnv3/ops_dcnv4/ops_roialign) are built with:
# Python's own CFLAGS (-O3 -DNDEBUG -fwrapv -Wall for a release CPython), then the caller's CFLAGS, then -g0.
#
# Why a script: setuptools *replaces* Python's CFLAGS with $CFLAGS when that is set (it does not append), so a bare
# `CFLAGS=-g0` compiles every translation unit at -O0 without NDEBUG. -g0 goes last: Python's CFLAGS carry -g, and
# debug information for the torch-heavy units costs compile time and wheel size while nothing at run time uses it.
#
# usage: CFLAGS=$(bash tools/install/release_cflags.sh PYTHON)
set -euo pipefail
python_cflags=$("${1:?usage: release_cflags.sh PYTHON}" -c 'import sysconfig; print(sysconfig.get_config_var("CFLAGS") or "")')
echo "$python_cflags ${CFLAGS:-} -g0" | tr -s ' ' | sed 's/^ //'
