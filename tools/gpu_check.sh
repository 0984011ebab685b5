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
# With --full (the full-stack proof; needs the kit of wheels that tools/install/build_gpu_kit.sh builds on a CPU
# machine, carried in .gpu-kit): first installs the kit offline (pip --no-index --target), then after the build
#   5. the detectors: Mask R-CNN and DINO InternImage-T training steps at 800x1333, batch 2, in fp32, fp16 and bf16
#      mixed precision, and their inference; images/s, peak memory, ratio to fp32 (tools/benchmarks/
#      bench_detector_steps.py);
#   6. train.py on a small synthetic shapes set on the GPU, then test.py --eval bbox segm of that checkpoint on the
#      GPU and on the CPU: every COCO metric must agree within EVAL_TOLERANCE (0.02, absolute, metrics in [0, 1]);
# then steps 2-4. Logs are packed into logs.tar.gz, so RESULTS_DIR holds 3 files (summary.txt, bench.jsonl,
# logs.tar.gz). Built to finish in < 9 minutes on one H100/H200 with 16 cores.
#
# usage: tools/gpu_check.sh [--full] [RESULTS_DIR]   (default: $OUT when set, else ./gpu_check_results)
# environment:
#   PYTHON                 interpreter (default: the first of python3, python on PATH that imports torch)
#   TORCH_CUDA_ARCH_LIST   architectures to build (default: the local GPU's, e.g. 9.0)
#   STEP_TIMEOUT_BUILD / _TESTS / _MEMCHECK / _BENCH   seconds per step (defaults 300 / 300 / 180 / 240;
#                          with --full: 240 / 150 / 90 / 90, and _KIT / _DETECTORS / _EVAL 60 / 200 / 150)
#   KIT_DIR                the kit's folder (--full; default .gpu-kit); KIT_SITE where it is installed
#                          (default /tmp/gpu-kit-site)
#   EVAL_ITERS             train.py iterations before the GPU/CPU test.py comparison (default 400; 20 without GPU)
#   GPU_CHECK_NO_GPU=1     for a machine without a GPU: build (TORCH_CUDA_ARCH_LIST, default 9.0), run the tests
#                          (the CUDA ones skip), and the benchmark in --smoke mode on the CPU; checks the script only.
# Exit status: 0 when every step passed, 1 otherwise (the summary names the failed steps).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
FULL=0
if [ "${1:-}" = --full ]; then FULL=1; shift; fi
RESULTS=${1:-${OUT:-$ROOT/gpu_check_results}}
if [ "$FULL" = 1 ]; then  # the full run's budget is 9 minutes: the op steps get less time than when run alone
    : "${STEP_TIMEOUT_BUILD:=240}" "${STEP_TIMEOUT_TESTS:=150}" "${STEP_TIMEOUT_MEMCHECK:=90}" "${STEP_TIMEOUT_BENCH:=90}"
fi
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
# At most a few files come back from a GPU machine: the step logs travel packed (also after a failed step).
pack_logs() {
    (cd "$RESULTS" && ls ./*.log > /dev/null 2>&1 && tar -czf logs.tar.gz ./*.log && rm -f ./*.log) || true
}
[ "$FULL" = 1 ] && trap pack_logs EXIT

say() { echo "$*" | tee -a "$SUMMARY"; }
elapsed() { echo "$(( $(date +%s) - $1 )) s"; }

cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

# -- 0. the kit (--full): mmcv-full with CUDA ops, mmdet, pycocotools, ..., installed offline --------------------------
if [ "$FULL" = 1 ]; then
    KIT_DIR=${KIT_DIR:-$ROOT/.gpu-kit}
    KIT_SITE=${KIT_SITE:-/tmp/gpu-kit-site}
    ls "$KIT_DIR"/mmcv_full-*.whl > /dev/null 2>&1 || {
        say "kit: FAILED: no mmcv_full wheel in $KIT_DIR (build the kit on a CPU machine:" \
            "tools/install/build_gpu_kit.sh, and carry .gpu-kit)"; exit 1; }
    t0=$(date +%s)
    rm -rf "$KIT_SITE"
    if timeout "${STEP_TIMEOUT_KIT:-60}" "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
            --target "$KIT_SITE" "$KIT_DIR"/*.whl > "$RESULTS/kit.log" 2>&1; then
        export PYTHONPATH="$KIT_SITE${PYTHONPATH:+:$PYTHONPATH}"
        say "kit: $(ls "$KIT_DIR"/*.whl | wc -l) wheels installed into $KIT_SITE in $(elapsed "$t0")" \
            "($(sed -n 1p "$KIT_DIR/MANIFEST.txt" 2>/dev/null | sed 's/^# //'))"
    else
        say "kit: FAILED after $(elapsed "$t0"): $(grep -m1 -i error "$RESULTS/kit.log" | cut -c1-300)"; exit 1
    fi
fi

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

cflags=$(bash tools/install/release_cflags.sh "$PY")  # Python's release flags with -g0, as `make setup` builds
for op in ops_dcnv3 ops_dcnv4; do
    t0=$(date +%s)
    # only this Python's binary is replaced (another Python's, e.g. a venv's cpython-311 build, stays)
    (cd "$op" && rm -f "_C$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')" && CFLAGS="$cflags" timeout "${STEP_TIMEOUT_BUILD:-300}" "$PY" setup.py build_ext --inplace) \
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

# -- 5. the detectors (--full) --------------------------------------------------------------------------------------
if [ "$FULL" = 1 ]; then
    t0=$(date +%s)
    if ! "$PY" -c 'import mmcv.ops, mmdet, mmcv_custom, mmdet_custom' > "$RESULTS/detectors.log" 2>&1; then
        say "detectors: FAILED: the kit's mmcv/mmdet do not import with this torch:" \
            "$(tail -n 1 "$RESULTS/detectors.log" | cut -c1-300)"
        failed+=(detectors)
    else
        smoke=()
        [ "$NO_GPU" = 1 ] && smoke=(--smoke)
        if timeout "${STEP_TIMEOUT_DETECTORS:-200}" "$PY" tools/benchmarks/bench_detector_steps.py \
                --results "$RESULTS/bench.jsonl" "${smoke[@]}" >> "$RESULTS/detectors.log" 2>&1; then
            status=ok
        else
            status=FAILED; failed+=(detectors)
        fi
        grep -E '^detector ' "$RESULTS/detectors.log" | tee -a "$SUMMARY"
        say "detectors${smoke[*]:+ (smoke, CPU: not figures)}: $status in $(elapsed "$t0")"
        [ "$status" = ok ] || tail -n 8 "$RESULTS/detectors.log" | tee -a "$SUMMARY"
    fi

    # -- 6. train.py, then test.py --eval bbox segm on the GPU and on the CPU -------------------------------------
    t0=$(date +%s)
    eval_dir=$(mktemp -d)
    iters=${EVAL_ITERS:-400}
    [ "$NO_GPU" = 1 ] && iters=${EVAL_ITERS:-20}
    data_opts=()
    for split in train val test; do
        folder=$split; [ "$split" = test ] && folder=val
        data_opts+=("data.$split.ann_file=$eval_dir/data/annotations/instances_$folder.json"
                    "data.$split.img_prefix=$eval_dir/data/$folder/")
    done
    eval_config=configs/demo/mask_rcnn_internimage_demo_shapes.py
    if timeout "${STEP_TIMEOUT_EVAL:-150}" bash -c '
            set -e
            "$0" tools/make_synthetic_coco.py --out "$1/data" --num-train 200 --num-val 50 --seed 0
            "$0" train.py "$2" --work-dir "$1/train" --seed 0 --no-validate \
                --cfg-options runner.max_iters="$3" log_config.interval=50 "${@:4}"
            "$0" test.py "$2" "$1/train/latest.pth" --eval bbox segm --work-dir "$1/test_device" --cfg-options "${@:4}"
            CUDA_VISIBLE_DEVICES= "$0" test.py "$2" "$1/train/latest.pth" --eval bbox segm \
                --work-dir "$1/test_cpu" --cfg-options "${@:4}"' \
            "$PY" "$eval_dir" "$eval_config" "$iters" "${data_opts[@]}" > "$RESULTS/eval.log" 2>&1 \
        && "$PY" tools/compare_eval.py "$eval_dir/test_device" "$eval_dir/test_cpu" --tolerance "${EVAL_TOLERANCE:-0.02}" \
            --labels "$([ "$NO_GPU" = 1 ] && echo CPU || echo GPU)" CPU >> "$RESULTS/eval.log" 2>&1
    then
        status=ok
    else
        status=FAILED; failed+=(eval)
    fi
    say "eval: train.py $iters iterations + test.py --eval bbox segm on the $([ "$NO_GPU" = 1 ] && echo CPU || echo GPU)" \
        "and on the CPU: $status in $(elapsed "$t0"): $(grep '^eval-compare:' "$RESULTS/eval.log" | cut -c15-)"
    [ "$status" = ok ] || grep -m 3 -E 'Error|error:' "$RESULTS/eval.log" | cut -c1-300 | tee -a "$SUMMARY"
    rm -rf "$eval_dir"
fi

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
