#!/usr/bin/env bash
# The synthetic training curriculum of scripts/quickstart.sh and scripts/memory_experiment.sh, in one place.
#   0. VISION_MINUTES (default 1.5) pre-training the vision encoder on patch labels (scripts/pretrain_vision.py,
#      the small model's stand-in for the ImageNet ViT of the released model)      -> OUT/vision/vit.pth
# then two to four stages of configs/synthetic/train.yaml, each from the weights of the stage before, the vision
# encoder at VISION_LR_SCALE (default 0.1) of the learning rate; the time budget alone ends each stage (the step
# cap is lifted):
#   1. FIRST_MINUTES on one-frame clips of NORM and MUL videos (the appearance words), with a one-frame global
#      memory (half the cost of a clip), from the pre-trained encoder                 -> OUT/appearance/
#   2. the rest of TOTAL_MINUTES on 3-frame clips of the four kinds in MIX through the memory, from the weights of
#      stage 1                                                                         -> OUT/ (if last)
#   3. optional, RULE_MINUTES (default 0: none): one-frame clips of the kinds in RULE_MIX (default [0,0,1,3]), each
#      at its video's first frame (the TEMP target named before its twin moves), with RULE_ARGS, from stage 2's
#      weights                                                                        -> OUT/rule/ (OUT/ if last)
#   4. optional, OWN_MINUTES (default 0: none): clips with OWN_ARGS (the memory experiment: 4-frame clips from the
#      first frame or across the twins' crossing, the mask history from the model's own masks), from the weights
#      of the stage before                                                            -> OUT/
#   RULE_MINUTES and OWN_MINUTES are taken from stage 2's share of TOTAL_MINUTES; with either, stage 2 writes
#   OUT/tracking/.
# FIRST_MIX (default [1,1,0,0]) is stage 1's share of NORM/MUL/SPAT/TEMP videos (SPAT is a one-frame task too).
# Overrides of model.* also reach stage 0 (the encoder it pre-trains must be the one stages 1-2 build).
# TOTAL_MINUTES includes stage 0. VISION_MINUTES=0 skips it (the encoder then learns from scratch at the full
# rate, as before 2026-11-29). Extra key=value overrides reach stages 1 to 4 (an ablation, a smaller batch);
# STAGE1_ARGS, STAGE2_ARGS, RULE_ARGS and OWN_ARGS (space-separated key=value) reach one stage only, after them.
#   bash scripts/train_two_stages.sh OUT TOTAL_MINUTES FIRST_MINUTES MIX [key=value ...]
#   bash scripts/train_two_stages.sh runs/x 11 6 '[2.0,2.0,1.0,1.0]' model.local_memory.size=0
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
VISION=${VISION_MINUTES:-1.5}
SCALE=${VISION_LR_SCALE:-0.1}
FIRST_MIX=${FIRST_MIX:-[1.0,1.0,0.0,0.0]}
RULE=${RULE_MINUTES:-0}
OWN=${OWN_MINUTES:-0}
RULE_MIX=${RULE_MIX:-[0.0,0.0,1.0,3.0]}
positive() { python -c "import sys; sys.exit(0 if float('$1') > 0 else 1)"; }
REST=$(python -c "print(max(float('$TOTAL') - float('$FIRST') - float('$VISION') - float('$RULE') - float('$OWN'), 0.1))")
# each stage writes OUT/ if it is the last one, else its own folder
SECOND_OUT=$OUT
RULE_OUT=$OUT
if positive "$OWN"; then RULE_OUT=$OUT/rule; fi
if positive "$RULE" || positive "$OWN"; then SECOND_OUT=$OUT/tracking; fi
ENCODER=()
MODEL_OVERRIDES=()  # model.* overrides shape the encoder that stage 0 pre-trains as well (model.vision.depth=4)
for arg in "$@"; do
    if [[ $arg == model.* ]]; then MODEL_OVERRIDES+=("$arg"); fi
done
if positive "$VISION"; then
    python scripts/pretrain_vision.py --config configs/synthetic/model.yaml --out "$OUT/vision/vit.pth" \
        --minutes "$VISION" ${VISION_STEPS:+--max-steps "$VISION_STEPS"} --no-progress "${MODEL_OVERRIDES[@]}"
    ENCODER=(train.optimizer.vision_lr_scale="$SCALE")
    FROM=(pretrained.vit="$OUT/vision/vit.pth")
else
    FROM=()
fi
# one stage of configs/synthetic/train.yaml: train_stage OUT_DIR MINUTES key=value ... (the stage's own settings,
# then the caller's overrides, which win over the lifted step cap)
train_stage() {
    local out=$1 minutes=$2
    shift 2
    python tools/train.py --config configs/synthetic/train.yaml output_dir="$out" train.max_minutes="$minutes" \
        train.max_steps=1000000 validation.splits=[] "$@"
}
# shellcheck disable=SC2086
train_stage "$OUT/appearance" "$FIRST" train.clip_length=1 "train.data.synthetic_mix=$FIRST_MIX" \
    model.global_memory.num_frames=1 "${FROM[@]}" "${ENCODER[@]}" "$@" ${STAGE1_ARGS:-}
# shellcheck disable=SC2086
train_stage "$SECOND_OUT" "$REST" pretrained.checkpoint="$OUT/appearance/checkpoints/last.pt" \
    train.schedule.warmup_steps=20 "train.data.synthetic_mix=$MIX" "${ENCODER[@]}" "$@" ${STAGE2_ARGS:-}
LAST=$SECOND_OUT
if positive "$RULE"; then
    # shellcheck disable=SC2086
    train_stage "$RULE_OUT" "$RULE" pretrained.checkpoint="$LAST/checkpoints/last.pt" train.schedule.warmup_steps=20 \
        train.clip_length=1 "train.data.synthetic_mix=$RULE_MIX" train.data.synthetic_start_share=1.0 \
        model.global_memory.num_frames=1 "${ENCODER[@]}" "$@" ${RULE_ARGS:-}
    LAST=$RULE_OUT
fi
if positive "$OWN"; then
    # shellcheck disable=SC2086
    train_stage "$OUT" "$OWN" pretrained.checkpoint="$LAST/checkpoints/last.pt" train.schedule.warmup_steps=20 \
        "train.data.synthetic_mix=$MIX" "${ENCODER[@]}" "$@" ${OWN_ARGS:-}
fi
