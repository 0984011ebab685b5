#!/usr/bin/env sh
# Build ops_dcnv4._C in place (CPU kernel; plus CUDA when nvcc and a CUDA torch are present).
# DCNV4_FORCE_CPU=1 sh make.sh builds the CPU kernel only. Needs ../ops_common (shared sources and build logic).
set -e
cd "$(dirname "$0")"
python setup.py build_ext --inplace
