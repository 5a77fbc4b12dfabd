#!/usr/bin/env bash
# Quickstart on the synthetic benchmark (CPU, no download): install, generate the test splits, then one recipe
# command trains the small model (configs/synthetic/recipes/quickstart.yaml: three stages stopped by step counts),
# evaluates NORM / MUL / SPAT / TEMP and writes the report. Outputs in runs/quickstart/.
#   bash scripts/quickstart.sh
#   bash scripts/quickstart.sh train.batch_size=4        # key=value edits reach every stage of the recipe
#   QUICKSTART_SMOKE=1 bash scripts/quickstart.sh        # a few steps and two test videos per split (the tests)
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
NUM_TEST=50
SMOKE=()
if [ -n "${QUICKSTART_SMOKE:-}" ]; then
    NUM_TEST=2
    SMOKE=(pretrain_vision.max_steps=2 train.max_steps=3 train.batch_size=2 train.data.samples_per_epoch=8)
fi
start=$(date +%s)
python tools/data/make_synthetic.py --out "$DATA" --size 64 --num-train 0 --num-test "$NUM_TEST"
python tools/run_recipe.py configs/synthetic/recipes/quickstart.yaml --output-dir "$OUT" \
    eval.data_root="$DATA" "${SMOKE[@]}" "$@"
echo "quickstart finished in $(( $(date +%s) - start )) s; results in $OUT/results.md"
