#!/usr/bin/env bash
# Build, on this (CPU) machine, the kit of wheels a bare GPU machine needs to run the detectors: the GPU machines
# have Python 3.12, torch 2.11 (CUDA 13), numpy 2, timm, opencv, matplotlib, scipy and pytest, but no mmcv/mmdet and
# no package registry. The kit holds
#   - mmcv-full 1.7.2 with its CUDA ops compiled for KIT_CUDA_ARCH (default 9.0: H100/H200) against that torch,
#   - mmdet 2.28.2, pycocotools, and the pure-Python requirements the GPU image lacks (addict, yapf, terminaltables,
#     shapely, ...), each for Python 3.12 / manylinux x86_64,
# in KIT_DIR (default .gpu-kit, ignored by git; at most KIT_MAX_MIB = 60 MiB, checked), with a manifest. The builder
# venv (KIT_VENV, default build/gpu-kit-venv) has the GPU image's torch and Python packages and no mmcv/mmdet, so it
# doubles as the dry run's interpreter: `make gpu-kit-dry-run` installs the kit offline into it (pip --no-index
# --target, as on the GPU machine) and runs `tools/gpu_check.sh --full` with the detector steps on the CPU.
#
# usage: tools/install/build_gpu_kit.sh            (README, "The GPU path")
# environment: KIT_PYTHON (python3.12), KIT_TORCH (2.11.0), KIT_TORCHVISION (0.26.0), KIT_CUDA_ARCH (9.0),
#              KIT_DIR, KIT_VENV, KIT_MAX_MIB, MMCV_SDIST (see build_mmcv_full.sh)
# The mmcv-full build is the long part (about 40-60 min on 2 cores, once: cached by torch, Python and arch list).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
KIT_PYTHON=${KIT_PYTHON:-python3.12}
KIT_TORCH=${KIT_TORCH:-2.11.0}
KIT_TORCHVISION=${KIT_TORCHVISION:-0.26.0}
KIT_CUDA_ARCH=${KIT_CUDA_ARCH:-9.0}
KIT_DIR=${KIT_DIR:-.gpu-kit}
KIT_VENV=${KIT_VENV:-build/gpu-kit-venv}
KIT_MAX_MIB=${KIT_MAX_MIB:-60}
PIP="$ROOT/tools/install/pip_quiet.sh"
CONSTRAINTS=$KIT_VENV.constraints.txt  # the stack's constraints but the GPU machines' torch/torchvision
start=$(date +%s)
stamp() { echo "[gpu-kit] $(( $(date +%s) - start )) s: $*"; }

# -- the builder venv: the GPU image's stack (Python 3.12, torch 2.11, numpy 2) ---------------------------------------
if [ ! -x "$KIT_VENV/bin/python" ]; then
    python=$(bash tools/install/find_python.sh "$KIT_PYTHON")
    "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' \
        || { echo "[gpu-kit] $KIT_PYTHON is not Python 3.12 (the GPU machines' Python)" >&2; exit 1; }
    "$python" -m venv "$KIT_VENV"
fi
PY=$KIT_VENV/bin/python
grep -v -E '^(torch|torchvision)==' requirements/constraints.txt > "$CONSTRAINTS"
if ! "$PY" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$KIT_TORCH')" 2>/dev/null; then
    stamp "installing torch $KIT_TORCH and the GPU image's packages into $KIT_VENV"
fi
# The GPU image's packages (KINDS.md of the device tool), at the stack's numpy-2 pins; torch's CUDA 13 build is
# PyPI's default for Linux. Idempotent: pip skips what is there.
bash "$PIP" "$PY" install -q -c "$CONSTRAINTS" "torch==$KIT_TORCH" "torchvision==$KIT_TORCHVISION" numpy \
    "setuptools<82" wheel ninja timm "opencv-python-headless>=4.12,<5" matplotlib scipy six pytest pillow pyyaml packaging
# What mmcv-full's build and its import check need; removed again below, so the venv stays like the GPU image.
bash "$PIP" "$PY" install -q -c "$CONSTRAINTS" addict yapf==0.40.1

# -- mmcv-full with CUDA ops for the GPU machines' architecture ------------------------------------------------------
stamp "mmcv-full 1.7.2 with CUDA ops for sm_${KIT_CUDA_ARCH/./} against torch $KIT_TORCH (cached after the first build)"
FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=$KIT_CUDA_ARCH bash tools/install/build_mmcv_full.sh "$PY"
wheel=$(ls "${INTERNIMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/internimage-det}"/wheels/mmcv-full-1.7.2/torch-"$("$PY" -c 'import torch; print(torch.__version__)')"-cp312-cuda-sm"${KIT_CUDA_ARCH//[^0-9A-Za-z+]/_}"/mmcv_full-1.7.2-*.whl)
bash "$PIP" "$PY" uninstall -q -y mmcv-full addict yapf

# -- the kit ---------------------------------------------------------------------------------------------------------
rm -rf "$KIT_DIR"
mkdir -p "$KIT_DIR"
cp "$wheel" "$KIT_DIR/"
# Wheels for Python 3.12 on manylinux x86_64, resolved here, installed there without a registry (--no-deps: each
# dependency the GPU image lacks is named). Versions follow the stack's constraints.
stamp "downloading mmdet and the pure-Python requirements for Python 3.12"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
bash "$PIP" "$PY" download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -c "$CONSTRAINTS" -d "$KIT_DIR" \
    mmdet==2.28.2 "pycocotools>=2.0.7" addict yapf==0.40.1 platformdirs tomli "importlib-metadata>=6.6" \
    terminaltables shapely
"$PY" - "$KIT_DIR" "$KIT_MAX_MIB" "$KIT_TORCH" "$KIT_CUDA_ARCH" <<'PY'
import hashlib
import pathlib
import sys

kit, max_mib, torch_version, arch = pathlib.Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
wheels = sorted(kit.glob('*.whl'))
total = sum(w.stat().st_size for w in wheels)
lines = [f'# gpu kit: Python 3.12, torch {torch_version}, CUDA ops for TORCH_CUDA_ARCH_LIST={arch}',
         f'# install: python3 -m pip install --no-index --no-deps --target DIR {kit}/*.whl && export PYTHONPATH=DIR']
for w in wheels:
    lines.append(f'{hashlib.sha256(w.read_bytes()).hexdigest()}  {w.stat().st_size:>10}  {w.name}')
(kit / 'MANIFEST.txt').write_text('\n'.join(lines) + '\n')
print(f'[gpu-kit] {len(wheels)} wheels, {total / 2**20:.1f} MiB in {kit} (limit {max_mib:g} MiB)')
for w in wheels:
    print(f'[gpu-kit]   {w.stat().st_size / 2**20:6.1f} MiB  {w.name}')
if total > max_mib * 2**20:
    sys.exit(f'[gpu-kit] the kit is {total / 2**20:.1f} MiB, over the {max_mib:g} MiB limit')
PY
stamp "done: carry $KIT_DIR to the GPU machine and run \`bash tools/gpu_check.sh --full\` there" \
      "(the dry run here: make gpu-kit-dry-run)"
