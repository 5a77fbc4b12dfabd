#!/usr/bin/env bash
# The synthetic training curriculum of scripts/quickstart.sh and scripts/memory_experiment.sh, in one place.
# Both stages use configs/synthetic/train.yaml; the time budget alone ends each stage (the step cap is lifted):
#   1. FIRST_MINUTES on one-frame clips of NORM and MUL videos (the appearance words), with a one-frame global
#      memory (half the cost of a clip)                                           -> OUT/appearance/
#   2. the rest of TOTAL_MINUTES on 3-frame clips of the four kinds in MIX through the memory, from the weights of
#      stage 1                                                                     -> OUT/
# Extra key=value overrides reach both stages (an ablation, a smaller batch for smoke runs).
#   bash scripts/train_two_stages.sh OUT TOTAL_MINUTES FIRST_MINUTES MIX [key=value ...]
#   bash scripts/train_two_stages.sh runs/x 11 7.5 '[2.0,2.0,1.0,1.0]' model.local_memory.size=0
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 4 ]; then
    echo "usage: bash scripts/train_two_stages.sh OUT TOTAL_MINUTES FIRST_MINUTES MIX [key=value ...]" >&2
    exit 2
fi
OUT=$1
TOTAL=$2
FIRST=$3
MIX=$4
shift 4
REST=$(python -c "print(max(float('$TOTAL') - float('$FIRST'), 0.1))")
python tools/train.py --config configs/synthetic/train.yaml output_dir="$OUT/appearance" \
    train.max_minutes="$FIRST" train.clip_length=1 "train.data.synthetic_mix=[1.0,1.0,0.0,0.0]" \
    model.global_memory.num_frames=1 train.max_steps=1000000 validation.splits=[] "$@"
python tools/train.py --config configs/synthetic/train.yaml output_dir="$OUT" train.max_minutes="$REST" \
    pretrained.checkpoint="$OUT/appearance/checkpoints/last.pt" train.schedule.warmup_steps=20 \
    "train.data.synthetic_mix=$MIX" train.max_steps=1000000 validation.splits=[] "$@"
