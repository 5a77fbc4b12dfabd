#!/usr/bin/env bash
# Quickstart on the embedded synthetic benchmark (CPU, no download): install, generate data, train the small
# model, evaluate NORM / MUL / SPAT / TEMP, print the table. Outputs in runs/quickstart/.
# Training follows scripts/train_two_stages.sh: stage 0 pre-trains the vision encoder on patch labels, then
# configs/synthetic/train.yaml learns the appearance words on one-frame clips of NORM and MUL videos (a global
# memory of one frame, which halves the cost of a clip), then the full recipe (3-frame clips through the memory,
# all four kinds, 2:2:1:1) from those weights.
#   bash scripts/quickstart.sh                                   # 1.5 + 6 + 3.5 minutes of training
#   QUICKSTART_MINUTES=20 QUICKSTART_APPEARANCE_MINUTES=12 QUICKSTART_VISION_MINUTES=2 bash scripts/quickstart.sh
#   QUICKSTART_SMOKE=1 bash scripts/quickstart.sh                # a few steps and videos (used by the tests)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ]; then
    [ -d .venv ] || python3 -m venv .venv
    # shellcheck disable=SC1091
    . .venv/bin/activate
    python -m pip install -q --upgrade pip
    python -m pip install -q -e '.[test]'
fi
OUT=${QUICKSTART_OUT:-runs/quickstart}
DATA=${QUICKSTART_DATA:-datasets/synthetic}
MINUTES=${QUICKSTART_MINUTES:-11}                    # training in all
APPEARANCE=${QUICKSTART_APPEARANCE_MINUTES:-6}       # of which the first stage
export VISION_MINUTES=${QUICKSTART_VISION_MINUTES:-1.5}  # and before it, pre-training the vision encoder
EXTRA=()
NUM_TEST=50
if [ -n "${QUICKSTART_SMOKE:-}" ]; then
    MINUTES=0.4
    APPEARANCE=0.2
    export VISION_MINUTES=0.1 VISION_STEPS=2
    NUM_TEST=2
    EXTRA=(train.max_steps=3 train.batch_size=2 train.data.samples_per_epoch=8 train.log_every=1)
fi
start=$(date +%s)
python tools/data/make_synthetic.py --out "$DATA" --size 64 --num-train 0 --num-test "$NUM_TEST"
bash scripts/train_two_stages.sh "$OUT/full" "$MINUTES" "$APPEARANCE" '[2.0,2.0,1.0,1.0]' "${EXTRA[@]}"
python tools/evaluate.py --config configs/synthetic/train.yaml --checkpoint "$OUT/full/checkpoints/last.pt" \
    eval.dataset=SYN eval.testing_type=ALL eval.data_root="$DATA" --output-dir "$OUT/eval/full" --save-masks \
    --no-progress
python scripts/quickstart_report.py --runs full="$OUT/eval/full" --out "$OUT" --gifs 2 --data-root "$DATA"
echo "quickstart finished in $(( $(date +%s) - start )) s; results in $OUT/results.json"
