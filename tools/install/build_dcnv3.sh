#!/usr/bin/env bash
# Build the DCNv3 extension (ops_dcnv3._C) in place, through the build cache of build_op.sh.
#
# usage: tools/install/build_dcnv3.sh PYTHON
set -euo pipefail
exec bash "$(dirname "$0")/build_op.sh" "${1:?usage: build_dcnv3.sh PYTHON}" ops_dcnv3
