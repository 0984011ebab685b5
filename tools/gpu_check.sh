#!/usr/bin/env bash
# The GPU check: on a bare GPU machine (torch, timm, nvcc, ninja; no mmcv/mmdet, no network), in one command:
#   1. builds ops_dcnv3._C and ops_dcnv4._C in place for the local GPU's architecture only, with MAX_JOBS = nproc
#      (a failed build prints the compiler's first error, not setuptools' traceback);
#   2. runs the op and backbone CUDA tests, the autocast tests, the CUDA-bodies host harness of both ops and the
#      sanitized host check of the kernel bodies (pytest; where pytest is missing, ops_dcnv3/test.py and
#      ops_dcnv4/test.py instead, and the summary says so);
#   3. runs tools/kernel_check/cuda_memcheck.py under `compute-sanitizer --tool memcheck` where the tool exists;
#   4. runs tools/benchmarks/bench_gpu.py: DCNv3 CUDA vs the PyTorch core on InternImage-T's stage shapes at
#      800x1344 (fwd, fwd+bwd; fp32/fp16/bf16), InternImage-T vs ConvNeXt-T fwd+bwd, peak memory of each.
# Every step runs under a time limit (STEP_TIMEOUT_<STEP> seconds, defaults below), so a hang costs one step.
# Prints one summary line per figure and writes them to RESULTS_DIR/summary.txt (and the JSON figures to
# RESULTS_DIR/bench.jsonl, every step's log to RESULTS_DIR/<step>.log). Built to finish in < 8 minutes on one H200
# with 16 cores, build included.
#
# usage: tools/gpu_check.sh [RESULTS_DIR]        (default: $OUT when set, else ./gpu_check_results)
# environment:
#   PYTHON                 interpreter (default: the first of python3, python on PATH that imports torch)
#   TORCH_CUDA_ARCH_LIST   architectures to build (default: the local GPU's, e.g. 9.0)
#   STEP_TIMEOUT_BUILD / _TESTS / _MEMCHECK / _BENCH   seconds per step (defaults 300 / 300 / 180 / 240)
#   GPU_CHECK_NO_GPU=1     for a machine without a GPU: build (TORCH_CUDA_ARCH_LIST, default 9.0), run the tests
#                          (the CUDA ones skip), and the benchmark in --smoke mode on the CPU; checks the script only.
# Exit status: 0 when every step passed, 1 otherwise (the summary names the failed steps).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RESULTS=${1:-${OUT:-$ROOT/gpu_check_results}}
PY=${PYTHON:-}
if [ -z "$PY" ]; then  # the first interpreter on PATH that has torch
    for candidate in python3 python; do
        if command -v "$candidate" > /dev/null && "$candidate" -c 'import torch' 2> /dev/null; then
            PY=$candidate; break
        fi
    done
    [ -n "$PY" ] || { echo "gpu_check: FAILED: no python3/python with torch on PATH (set PYTHON)"; exit 1; }
fi
NO_GPU=${GPU_CHECK_NO_GPU:-0}
mkdir -p "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)
SUMMARY=$RESULTS/summary.txt
: > "$SUMMARY"
: > "$RESULTS/bench.jsonl"
failed=()
start_all=$(date +%s)

say() { echo "$*" | tee -a "$SUMMARY"; }
elapsed() { echo "$(( $(date +%s) - $1 )) s"; }

cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

# -- 0. environment -------------------------------------------------------------------------------------------------
"$PY" - > "$RESULTS/environment.log" 2>&1 <<'EOF'
import importlib.util, platform, sys
import torch
print('python', platform.python_version(), '| torch', torch.__version__, '| torch CUDA', torch.version.cuda)
if torch.cuda.is_available():
    for i in range(torch.cuda.device_count()):
        print(f'cuda:{i}', torch.cuda.get_device_name(i), 'capability', torch.cuda.get_device_capability(i))
else:
    print('no CUDA device visible')
for name in ('timm', 'pytest', 'numpy', 'setuptools', 'mmcv', 'mmdet'):
    try:
        found = importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a finder refusing the name counts as absent
        found = False
    print(name, 'present' if found else 'absent')
EOF
echo "ninja $(command -v ninja >/dev/null && ninja --version || echo absent)" >> "$RESULTS/environment.log"
say "gpu_check: $(head -n 1 "$RESULTS/environment.log"); $(grep -c '^cuda:' "$RESULTS/environment.log") GPU(s);" \
    "nvcc $(nvcc --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p' || echo missing); $(nproc) cores;" \
    "absent: $(sed -n 's/^\([a-z]*\) absent$/\1/p' "$RESULTS/environment.log" | tr '\n' ' ')"
grep -q '^setuptools present' "$RESULTS/environment.log" || {
    say "gpu_check: FAILED: setuptools is not installed (torch.utils.cpp_extension needs it to build ops_dcnv3)"; exit 1; }
grep -q '^cuda:' "$RESULTS/environment.log" || [ "$NO_GPU" = 1 ] || {
    say "gpu_check: FAILED: no CUDA device visible (GPU_CHECK_NO_GPU=1 runs the GPU-free part)"; exit 1; }

# -- 1. build -------------------------------------------------------------------------------------------------------
if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ]; then
    if [ "$NO_GPU" = 1 ]; then
        TORCH_CUDA_ARCH_LIST=9.0
    else
        TORCH_CUDA_ARCH_LIST=$("$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')
    fi
fi
export TORCH_CUDA_ARCH_LIST MAX_JOBS=${MAX_JOBS:-$(nproc)}

# The compiler's first error and a few lines after it (setuptools' traceback at the end of a log says nothing).
first_error() {
    local line
    line=$(grep -n -m1 -E '(error|Error)( [A-Z0-9#]+)?:|fatal error' "$1" | cut -d: -f1)
    if [ -n "$line" ]; then sed -n "${line},$((line + 6))p" "$1"; else tail -n 15 "$1"; fi
}

for op in ops_dcnv3 ops_dcnv4; do
    t0=$(date +%s)
    (cd "$op" && rm -f _C*.so && timeout "${STEP_TIMEOUT_BUILD:-300}" "$PY" setup.py build_ext --inplace) \
        > "$RESULTS/build_$op.log" 2>&1
    status=$?
    if [ "$status" = 0 ] && "$PY" -c "import $op._C as C, sys; sys.exit(0 if C.with_cuda else 1)" \
            >> "$RESULTS/build_$op.log" 2>&1; then
        say "build: $op._C with CUDA for TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST, MAX_JOBS=$MAX_JOBS:" \
            "ok in $(elapsed "$t0")"
    elif [ "$status" = 124 ]; then
        say "build: $op FAILED: timed out after ${STEP_TIMEOUT_BUILD:-300} s (STEP_TIMEOUT_BUILD);" \
            "last line: $(tail -n 1 "$RESULTS/build_$op.log" | cut -c1-200)"
        say "gpu_check: FAILED (build) in $(elapsed "$start_all")"
        exit 1
    else
        say "build: $op FAILED after $(elapsed "$t0") (TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST); first error:"
        first_error "$RESULTS/build_$op.log" | tee -a "$SUMMARY"
        say "gpu_check: FAILED (build) in $(elapsed "$start_all")"
        exit 1
    fi
done

# -- 2. tests -------------------------------------------------------------------------------------------------------
TESTS=(tests/ops_dcnv3/test_dcnv3_cuda.py tests/ops_dcnv4/test_dcnv4_cuda.py tests/models/test_intern_image_cuda.py
       tests/ops_dcnv3/test_dcnv3_cuda_bodies.py tests/ops_dcnv4/test_dcnv4_cuda_bodies.py
       tests/ops_dcnv3/test_dcnv3_fused_softmax.py tests/ops_dcnv3/test_dcn_v4_op_route.py
       tests/ops_dcnv3/test_dcnv3_autocast.py tests/ops_dcnv4/test_dcnv4_autocast.py
       tests/models/test_plain_pytorch_import.py)
# The sanitized host check of the kernel bodies needs a compiler with ASan/UBSan (g++ or clang++).
command -v "${CXX:-g++}" > /dev/null && TESTS+=(tests/ops_dcnv3/test_cuda_bodies_sanitized.py)
t0=$(date +%s)
if "$PY" -c 'import pytest' 2>/dev/null; then
    # No project addopts (they name plugins, e.g. pytest-timeout's `timeout`, that may be missing here); the
    # `cuda` marker is registered in pyproject.toml either way.
    if timeout "${STEP_TIMEOUT_TESTS:-300}" "$PY" -m pytest -p no:cacheprovider -o addopts='' \
            --import-mode=importlib -q -rs "${TESTS[@]}" > "$RESULTS/tests.log" 2>&1; then
        status=ok
    else
        status=FAILED; failed+=(tests)
    fi
    say "tests: $status in $(elapsed "$t0"): $(tail -n 1 "$RESULTS/tests.log")"
    grep -E '^(FAILED|ERROR)' "$RESULTS/tests.log" | head -n 20 | tee -a "$SUMMARY"
    if [ "$NO_GPU" != 1 ] && grep -q 'SKIPPED.*no CUDA device' "$RESULTS/tests.log"; then
        say "tests: FAILED: CUDA tests skipped although a GPU is present"; failed+=(tests-skipped)
    fi
else
    say "tests: pytest is not installed here: the pytest CUDA tests were NOT run;" \
        "running ops_dcnv3/test.py and ops_dcnv4/test.py (CPU and CUDA kernels vs the PyTorch cores) instead"
    status=ok
    for op in ops_dcnv3 ops_dcnv4; do
        timeout "${STEP_TIMEOUT_TESTS:-300}" "$PY" "$op/test.py" >> "$RESULTS/tests.log" 2>&1 || { status=FAILED; }
    done
    [ "$status" = ok ] || failed+=(tests)
    say "tests: ops_dcnv3/test.py, ops_dcnv4/test.py $status in $(elapsed "$t0"): $(tail -n 1 "$RESULTS/tests.log")"
fi

# -- 3. compute-sanitizer memcheck ----------------------------------------------------------------------------------
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
if [ "$NO_GPU" = 1 ]; then
    say "memcheck: skipped (no GPU)"
elif [ -z "$sanitizer" ]; then
    say "memcheck: skipped: compute-sanitizer not found"
else
    t0=$(date +%s)
    if timeout "${STEP_TIMEOUT_MEMCHECK:-180}" "$sanitizer" --tool memcheck --error-exitcode 1 \
            "$PY" tools/kernel_check/cuda_memcheck.py > "$RESULTS/memcheck.log" 2>&1; then
        status=ok
    else
        status=FAILED; failed+=(memcheck)
    fi
    say "memcheck: $status in $(elapsed "$t0"): $(grep -E 'ERROR SUMMARY|cuda_memcheck:' "$RESULTS/memcheck.log" \
        | tr '\n' ' ')"
    [ "$status" = ok ] || grep -m 5 -E '=========  (Invalid|Address|Error)' "$RESULTS/memcheck.log" | tee -a "$SUMMARY"
fi

# -- 4. benchmark ---------------------------------------------------------------------------------------------------
t0=$(date +%s)
smoke=()
[ "$NO_GPU" = 1 ] && smoke=(--smoke)
if timeout "${STEP_TIMEOUT_BENCH:-240}" "$PY" tools/benchmarks/bench_gpu.py --results "$RESULTS/bench.jsonl" "${smoke[@]}" > "$RESULTS/bench.log" 2>&1
then
    status=ok
else
    status=FAILED; failed+=(benchmark)
fi
grep -E '^(dcnv3|backbone) ' "$RESULTS/bench.log" | tee -a "$SUMMARY"
say "benchmark${smoke[*]:+ (smoke, CPU: not figures)}: $status in $(elapsed "$t0")"
[ "$status" = ok ] || tail -n 15 "$RESULTS/bench.log" | tee -a "$SUMMARY"

if [ ${#failed[@]} -eq 0 ]; then
    say "gpu_check: passed in $(elapsed "$start_all"); results in $RESULTS"
else
    say "gpu_check: FAILED (${failed[*]}) in $(elapsed "$start_all"); results in $RESULTS"
    exit 1
fi
