#!/usr/bin/env bash
# The main job (`make demo`): generate the synthetic shapes dataset, train the demo InternImage Mask R-CNN on
# the CPU, evaluate it on the validation split with pycocotools (bbox and segm COCO metrics), draw its
# predictions, and say where everything went.
#
#   bash tools/run_demo.sh [PYTHON]
#   env: DEMO_CONFIG (configs/demo/mask_rcnn_internimage_demo_shapes.py), DEMO_WORK_DIR (work_dirs/demo),
#        DEMO_DATA (data/demo_shapes), DEMO_ITERS (the config's max_iters), DEMO_NUM_TRAIN (2000), DEMO_NUM_VAL (200),
#        DEMO_EVAL ("bbox segm"; "bbox" for the DINO demo config), DEMO_VAL_INTERVAL (250: validation every 250
#        iterations during training, for the val-mAP curve; 0: no validation during training)
set -euo pipefail

PY=${1:-python3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
CONFIG=${DEMO_CONFIG:-configs/demo/mask_rcnn_internimage_demo_shapes.py}
WORK_DIR=${DEMO_WORK_DIR:-work_dirs/demo}
DATA=${DEMO_DATA:-data/demo_shapes}
NUM_TRAIN=${DEMO_NUM_TRAIN:-2000}
NUM_VAL=${DEMO_NUM_VAL:-200}
read -r -a EVAL <<< "${DEMO_EVAL:-bbox segm}"
# the config's data paths point at data/demo_shapes; follow DEMO_DATA
EXTRA_CFG=()
for split in train val test; do
    folder=$split
    [ "$split" = test ] && folder=val
    EXTRA_CFG+=(data.$split.ann_file="$DATA/annotations/instances_$folder.json" data.$split.img_prefix="$DATA/$folder/")
done
if [ -n "${DEMO_ITERS:-}" ]; then
    EXTRA_CFG+=(runner.max_iters="$DEMO_ITERS")
fi
VAL_INTERVAL=${DEMO_VAL_INTERVAL:-250}
TRAIN_CFG=("${EXTRA_CFG[@]}")
VALIDATE=()
if [ "$VAL_INTERVAL" -gt 0 ]; then
    TRAIN_CFG+=(evaluation.interval="$VAL_INTERVAL")
else
    VALIDATE=(--no-validate)
fi
# One intra-op thread for the model plus one data-loader worker fill 2 cores. Measured on a shared 2-core machine,
# 2 intra-op threads were up to 10x slower than 1 as soon as other processes competed for the cores (OpenMP threads
# spin waiting for each other), while the gain on idle cores is small for 128-px images.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

start=$(date +%s)
stamp() { echo "[demo] $(( $(date +%s) - start ))s: $*"; }

stamp "generating the synthetic dataset in $DATA ($NUM_TRAIN train / $NUM_VAL val images, seed 0)"
"$PY" tools/make_synthetic_coco.py --out "$DATA" --num-train "$NUM_TRAIN" --num-val "$NUM_VAL" --seed 0

rm -rf "$WORK_DIR"  # a fresh run: the demo shows training from the start
stamp "training $CONFIG (log: $WORK_DIR/*.log; validation every $VAL_INTERVAL iterations, 0: none)"
"$PY" train.py "$CONFIG" --work-dir "$WORK_DIR" --seed 0 ${VALIDATE[@]+"${VALIDATE[@]}"} --cfg-options "${TRAIN_CFG[@]}"
train_end=$(date +%s)

stamp "evaluating $WORK_DIR/latest.pth on the validation split (COCO metrics: ${EVAL[*]})"
"$PY" test.py "$CONFIG" "$WORK_DIR/latest.pth" --eval "${EVAL[@]}" --work-dir "$WORK_DIR" --cfg-options "${EXTRA_CFG[@]}" \
    --out "$WORK_DIR/val_results.pkl" --show-dir "$WORK_DIR/predictions" --show-score-thr 0.3 \
    --eval-options jsonfile_prefix="$WORK_DIR/val_results" --plot-dir "$WORK_DIR" \
    | tee "$WORK_DIR/test_output.txt"

first_val_image=$(ls "$DATA"/val | head -n 1)
"$PY" image_demo.py "$DATA/val/$first_val_image" "$CONFIG" "$WORK_DIR/latest.pth" --device cpu \
    --out-file "$WORK_DIR/image_demo_$first_val_image" --score-thr 0.3

end=$(date +%s)
echo
echo "================================ demo done in $(( end - start ))s (training $(( train_end - start ))s incl. data) ==="
echo "dataset:        $DATA (annotations/instances_{train,val}.json, train/, val/)"
echo "training log:   $(ls "$WORK_DIR"/*.log | tail -n 1)  (losses, lr, ETA; json log next to it)"
echo "checkpoint:     $WORK_DIR/latest.pth"
echo "metrics:        $(ls "$WORK_DIR"/eval_*.json | tail -n 1)"
echo "COCO results:   $(ls "$WORK_DIR"/val_results.*.json | tr '\n' ' ')"
echo "pictures:       $WORK_DIR/predictions/ (all val images), $WORK_DIR/image_demo_$first_val_image"
echo "curves:         $(ls "$WORK_DIR"/loss_lr.png "$WORK_DIR"/val_map.png 2>/dev/null | tr '\n' ' ')(loss and lr; val mAP)"
echo "evaluation:     $(ls "$WORK_DIR"/per_class_ap_*.png "$WORK_DIR"/precision_recall_*.png 2>/dev/null | tr '\n' ' ')"
echo "                (per-class AP, precision-recall; numbers in $WORK_DIR/per_class_ap_*.json)"
"$PY" - "$(ls "$WORK_DIR"/eval_*.json | tail -n 1)" <<'EOF'
import json
import sys

metric = json.load(open(sys.argv[1]))['metric']
parts = [f"{kind} mAP {metric[f'{kind}_mAP']:.3f} (AP50 {metric[f'{kind}_mAP_50']:.3f})"
         for kind in ('bbox', 'segm') if f'{kind}_mAP' in metric]
print(' | '.join(parts) + ' on the validation split')
EOF
