# One-command set-up and the project's everyday commands. `make setup` is idempotent: a second run on the same
# machine re-checks and does nothing (the mmcv-full wheel and the DCNv3/DCNv4 binaries are cached outside the repo).
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c

# Any supported Python (3.11 default, 3.12, 3.13) into any venv folder: `make setup PYTHON=python3.12 VENV=.venv312`.
# PYTHON is a command name or a path (tools/install/find_python.sh also finds pyenv versions the shim hides). The
# numpy stack follows the Python version (requirements/constraints.txt): numpy 1.26.4 on 3.11, numpy 2 on 3.12+.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
CONSTRAINTS_FILE ?= requirements/constraints.txt
CONSTRAINTS := -c $(CONSTRAINTS_FILE)
# pip with one known line of noise dropped; a failed install still fails the rule (tools/install/pip_quiet.sh).
PIP := bash tools/install/pip_quiet.sh $(PY)
BUILD_REQUIREMENTS ?= requirements/build.txt
REQUIREMENTS ?= requirements.txt
DEPLOY_REQUIREMENTS ?= requirements/deploy-nodeps.txt

# The smoke set CI runs on the Python 3.12 stack (numpy 2; 3.13 likewise by hand): the numpy/torch compat patches, the stack
# check and pins, the DCNv3/DCNv4 op tests through Python (the C++-only host-harness and compile tests do not depend
# on the Python version and run in the full suite), the backbones, one train + test run of the demo config with
# `--eval bbox segm`, and the ONNX export round trip. `make smoke PYTHON=python3.12 VENV=.venv312`.
SMOKE_TESTS ?= tests/mmcv_custom/test_numpy_compat.py tests/mmcv_custom/test_torch_compat.py \
	tests/mmcv_custom/test_stack_check.py tests/tools/install/test_stack_versions.py \
	tests/ops_dcnv3/test_dcnv3_autocast.py tests/ops_dcnv4/test_dcnv4_autocast.py tests/mmcv_custom/test_autocast_compat.py \
	tests/ops_dcnv3/test_dcnv3_func.py tests/ops_dcnv3/test_dcnv3_modules.py tests/ops_dcnv3/test_dcnv3_fused_softmax.py \
	tests/ops_dcnv4/test_dcnv4_func.py tests/ops_dcnv4/test_dcnv4_modules.py tests/models/test_intern_image.py \
	tests/models/test_flash_intern_image.py tests/tools/test_train_and_test.py::test_eval_metrics_come_from_pycocotools \
	tests/tools/test_train_and_test.py::test_result_files_are_valid_coco_json \
	tests/deploy/test_deploy.py::test_onnx_graph_is_standard_opset16_with_gridsample_dcnv3 \
	tests/deploy/test_deploy.py::test_stock_onnxruntime_matches_pytorch

.PHONY: setup test test-gpu gpu-check gpu-kit gpu-kit-dry-run kernel-check demo bench lint clean-venv smoke

# OPS_CPU_ONLY=1 builds the DCNv3/DCNv4 extensions without their CUDA kernels (CI's second stack: its smoke set runs
# on the CPU, and the default stack's build already compiles the CUDA kernels). Pass it to `make smoke` too.
OPS_ENV := $(if $(filter 1,$(OPS_CPU_ONLY)),DCNV3_FORCE_CPU=1 DCNV4_FORCE_CPU=1,)

setup: $(VENV)/.deps-stamp
	$(OPS_ENV) bash tools/install/build_op.sh $(PY) ops_dcnv3
	$(OPS_ENV) bash tools/install/build_op.sh $(PY) ops_roialign
	$(OPS_ENV) bash tools/install/build_op.sh $(PY) ops_dcnv4
	@$(PY) -c "import mmcv_custom, mmdet_custom, ops_dcnv3, ops_dcnv4; \
	print('[setup] stack OK: torch', __import__('torch').__version__, '| mmcv-full', __import__('mmcv').__version__, \
	'| mmdet', __import__('mmdet').__version__, '| DCNv3 extension:', ops_dcnv3.extension_available(), \
	'| DCNv4 extension:', ops_dcnv4.extension_available())"

$(PY):
	python=$$(bash tools/install/find_python.sh '$(PYTHON)') && \
	$$python tools/install/check_stack_pins.py --python-only && $$python -m venv $(VENV)

# Build requirements first (mmcv-full compiles against them), then the pure-Python rest (mmcv's own
# imports - yapf, addict, opencv - must be present before its import check), then mmcv-full itself.
$(VENV)/.deps-stamp: $(PY) requirements.txt requirements/*.txt pyproject.toml tools/install/build_mmcv_full.sh \
                      tools/install/pip_quiet.sh tools/install/check_stack_pins.py
	$(PIP) install -q $(CONSTRAINTS) -r $(BUILD_REQUIREMENTS)
	$(PIP) install -q $(CONSTRAINTS) -r $(REQUIREMENTS)
	bash tools/install/build_mmcv_full.sh $(PY)
	$(PIP) install -q --no-deps --no-build-isolation -e .
	# mmdeploy 0.14's metadata pins protobuf==3.20.2, which onnx rejects: installed without its (stale) dependencies.
	$(PIP) install -q --no-deps $(CONSTRAINTS) -r $(DEPLOY_REQUIREMENTS)
	$(PY) tools/install/check_stack_pins.py $(CONSTRAINTS_FILE)
	touch $@

test: setup
	$(PY) -m pytest

smoke: setup
	$(PY) -m pytest --durations=10 $(SMOKE_TESTS)

# Only the tests that need a GPU (marker `cuda`; they skip with the reason where none is visible).
test-gpu: setup
	$(PY) -m pytest -m cuda

# The CUDA kernels' per-thread bodies on the host, built torch-free as C++17 under ASan + UBSan, against the PyTorch
# reference (also part of `make test`; README, "The GPU path").
kernel-check: setup
	$(PY) -m pytest tests/ops_dcnv3/test_cuda_bodies_sanitized.py tests/ops_dcnv3/test_cxx17_sources.py

# The GPU check on a bare GPU machine (torch, timm, nvcc, ninja; no mmcv/mmdet, no venv): see the README.
gpu-check:
	bash tools/gpu_check.sh

# The kit of wheels for a bare GPU machine (Python 3.12, torch 2.11, CUDA ops for sm_90), built here into .gpu-kit,
# and its GPU-free dry run: installed offline into the kit's builder venv (the GPU image's packages, no mmcv/mmdet),
# then `tools/gpu_check.sh --full` with the detector steps on the CPU. README, "The GPU path".
KIT_VENV ?= build/gpu-kit-venv
gpu-kit:
	bash tools/install/build_gpu_kit.sh

# In a copy of the working tree (build/gpu-kit-dry-run/src): the check builds the ops in place for the kit's torch,
# which must not replace this checkout's binaries. Generous step limits: the 2-core machine is no GPU machine.
gpu-kit-dry-run: gpu-kit
	rm -rf build/gpu-kit-dry-run && mkdir -p build/gpu-kit-dry-run/src
	git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t build/gpu-kit-dry-run/src
	cd build/gpu-kit-dry-run/src && GPU_CHECK_NO_GPU=1 PYTHON=$(abspath $(KIT_VENV))/bin/python \
	KIT_DIR=$(abspath .gpu-kit) STEP_TIMEOUT_BUILD=1800 STEP_TIMEOUT_TESTS=1200 STEP_TIMEOUT_BENCH=600 \
	STEP_TIMEOUT_DETECTORS=1200 STEP_TIMEOUT_EVAL=900 bash tools/gpu_check.sh --full $(abspath build/gpu-kit-dry-run/results)

demo: setup
	bash tools/run_demo.sh $(PY)

bench: setup
	@for script in tools/benchmarks/bench_*.py; do echo "== $$script"; $(PY) $$script; done

lint: $(VENV)/.deps-stamp
	$(PY) -m ruff check .

clean-venv:
	rm -rf $(VENV)
