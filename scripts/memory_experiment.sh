#!/usr/bin/env bash
# The memory experiment: train the full model and three memory ablations with the same budget on the synthetic
# benchmark, evaluate NORM / MUL / SPAT / TEMP, write docs/memory_experiment.{md,json,png}.
# Every variant trains with the curriculum of scripts/train_two_stages.sh, its ablation in every stage: VISION
# minutes pre-training the vision encoder, APPEARANCE minutes of one-frame clips of the kinds in FIRST_MIX, then
# 3-frame clips of the four kinds in MIX through the memory, then optionally RULE minutes of one-frame clips at the
# first frame (RULE_MIX) and OWN minutes of clips on the model's own masks (OWN_ARGS); MINUTES in all.
# RECIPE picks the defaults of every setting below (each can still be set on its own):
#   staged (the default; docs/memory_experiment.md): the curriculum of 2026-11-30 (README, "The staged recipe"): the
#     mask encoded from every pixel of its patch, a window of recent frames read with their positions, a locality
#     bias (model.reader_locality=1.0) and, since 2026-12-01, the global memory read by place too (its 3 frames
#     kept whole: model.global_memory.write=window model.global_memory.size=3.0; MODEL_ARGS), the rule stage with
#     3 global frames (RULE_ARGS='model.global_memory.num_frames=3');
#     26 min = 1.5 + 1 minute of one-frame clips + 8 of 3-frame clips (half the TEMP clips across the twins'
#     crossing) + RULE 4.5 of one-frame SPAT / TEMP clips at the first frame + OWN 11 of 4-frame clips on the
#     model's own masks, from the first frame or across the crossing
#   two_stage: the recipe of the run before (commit aba8e45; 25 min: 1.5 + 5 on one-frame clips of the four kinds at
#     their first frame + 18.5 on 3-frame clips, half from the first frame and half with a context frame; the
#     released model's memory)
# In both the ViT's position embedding starts as a 2-D sine-cosine table (POS_EMBED=sincos).
# TEMP is also reported by the side of the twins' crossing (scripts/temp_crossing.py) and with the model's own vs
# the true masks in its local memory (scripts/memory_oracle.py).
#   bash scripts/memory_experiment.sh                       # RECIPE=staged, 26 minutes per variant (about 1 h 50 min)
#   RECIPE=two_stage bash scripts/memory_experiment.sh      # 25 minutes per variant
#   MINUTES=7 APPEARANCE=3 VISION=1.5 RECIPE=two_stage bash scripts/memory_experiment.sh
#   MIX='[1,1,1,1]' bash scripts/memory_experiment.sh       # share of NORM/MUL/SPAT/TEMP training videos
#   RECIPE=two_stage FIRST_MIX='[1,1,1,0]' STAGE1_ARGS= STAGE2_ARGS= bash scripts/memory_experiment.sh  # of 2026-11-29
#   RECIPE=two_stage FIRST_MIX='[1,1,0,0]' POS_EMBED=random STAGE1_ARGS= STAGE2_ARGS= bash scripts/memory_experiment.sh
#                                                            # the quickstart's recipe
#   MODEL_ARGS='model.local_memory.write=window model.reader_positions=true' bash scripts/memory_experiment.sh
#                                                            # other model overrides, for every variant
#   VARIANTS='full no_local_memory' DOCS=docs/x bash scripts/memory_experiment.sh   # some of the variants
#   PARALLEL=1 bash scripts/memory_experiment.sh            # the variants at once, logs in OUT/VARIANT.log (a GPU)
#   RESUME=1 bash scripts/memory_experiment.sh              # keep the variants already evaluated in OUT
#   SMOKE=1 bash scripts/memory_experiment.sh               # a few steps (used by the tests)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/memory_experiment}
DATA=${DATA:-datasets/synthetic}
DOCS=${DOCS:-docs}
RECIPE=${RECIPE:-staged}
# TEMP: stage 1 learns the first frame (clips begin at the video's first frame, before the twins cross), stage 2
# follows the target through the crossing (half the clips begin there; the others begin with a context frame)
D_STAGE2='train.data.synthetic_start_share=0.5 train.data.synthetic_context_frame=true'
case $RECIPE in
    staged)
        D_MINUTES=26 D_APPEARANCE=1 D_RULE=4.5 D_OWN=11
        D_STAGE2="$D_STAGE2 train.data.synthetic_crossing_share=0.5"
        D_MODEL_ARGS='model.local_memory.mask_encoding=patch model.local_memory.write=window model.reader_positions=true model.reader_locality=1.0 model.global_memory.write=window model.global_memory.size=3.0'
        D_RULE_ARGS='model.global_memory.num_frames=3'
        ;;
    two_stage)
        D_MINUTES=25 D_APPEARANCE=5 D_RULE=0 D_OWN=0 D_MODEL_ARGS= D_RULE_ARGS=
        ;;
    *)
        echo "unknown RECIPE $RECIPE; expected staged or two_stage" >&2
        exit 2
        ;;
esac
MINUTES=${MINUTES:-$D_MINUTES}
APPEARANCE=${APPEARANCE:-$D_APPEARANCE}
export VISION_MINUTES=${VISION:-1.5}
export RULE_MINUTES=${RULE:-$D_RULE} OWN_MINUTES=${OWN:-$D_OWN}
MIX=${MIX:-[1.0,1.0,2.0,2.0]}   # twice as many SPAT and TEMP training videos: the splits that need memory
export FIRST_MIX=${FIRST_MIX:-[1.0,1.0,1.0,1.0]}
export RULE_MIX=${RULE_MIX:-[0.0,0.0,1.0,3.0]}   # the rule stage: SPAT and the TEMP target at the first frame
export RULE_ARGS=${RULE_ARGS-$D_RULE_ARGS}
export STAGE1_ARGS=${STAGE1_ARGS-train.data.synthetic_start_share=1.0}
export STAGE2_ARGS=${STAGE2_ARGS-$D_STAGE2}
# the own-masks stage: 4-frame clips, teacher forcing 0; every clip from the first frame, except 60% of the TEMP
# clips placed across the crossing (with a context frame); more TEMP clips
export OWN_ARGS=${OWN_ARGS-train.clip_length=4 train.teacher_forcing=0.0 train.data.synthetic_start_share=1.0 \
train.data.synthetic_context_frame=true train.data.synthetic_crossing_share=0.6 train.data.synthetic_mix=[1.0,1.0,2.0,3.0]}
POS_EMBED=${POS_EMBED:-sincos}
MODEL_ARGS=${MODEL_ARGS-$D_MODEL_ARGS}
# shellcheck disable=SC2206
EXTRA=(model.vision.pos_embed_init="$POS_EMBED" ${MODEL_ARGS})
NUM_TEST=50
ORACLE_VIDEOS=40
if [ -n "${SMOKE:-}" ]; then
    MINUTES=0.2
    APPEARANCE=0.1
    export VISION_MINUTES=0.05 VISION_STEPS=2
    [ "$RULE_MINUTES" = 0 ] || RULE_MINUTES=0.05
    [ "$OWN_MINUTES" = 0 ] || OWN_MINUTES=0.05
    NUM_TEST=2
    ORACLE_VIDEOS=1
    EXTRA+=(train.max_steps=2 train.batch_size=2 train.data.samples_per_epoch=4)
fi
declare -A VARIANTS_ARGS=(
    [full]=""
    [no_local_memory]="model.local_memory.size=0"
    [no_global_memory]="model.global_memory.size=0"
    [no_mask_history]="model.local_memory.mask_history=false"
)
# shellcheck disable=SC2206
SELECTED=(${VARIANTS:-full no_local_memory no_global_memory no_mask_history})
for variant in "${SELECTED[@]}"; do
    if [ -z "${VARIANTS_ARGS[$variant]+set}" ]; then
        echo "unknown variant $variant; expected some of: full no_local_memory no_global_memory no_mask_history" >&2
        exit 2
    fi
done
start=$(date +%s)
python scripts/make_synthetic.py --out "$DATA" --size 64 --num-train 0 --num-test "$NUM_TEST"
# train and evaluate one variant
run_variant() {
    local variant=$1
    local begin
    begin=$(date +%s)
    # the variant's own setting last: it wins over MODEL_ARGS (no_global_memory's size=0 over a recipe's size)
    # shellcheck disable=SC2086
    bash scripts/train_two_stages.sh "$OUT/$variant" "$MINUTES" "$APPEARANCE" "$MIX" "${EXTRA[@]}" ${VARIANTS_ARGS[$variant]}
    # shellcheck disable=SC2086
    python tools/evaluate.py --config configs/synthetic/train.yaml --checkpoint "$OUT/$variant/checkpoints/last.pt" \
        "${EXTRA[@]}" ${VARIANTS_ARGS[$variant]} eval.dataset=SYN eval.testing_type=ALL eval.data_root="$DATA" \
        --output-dir "$OUT/eval/$variant" --no-progress
    echo $(( $(date +%s) - begin )) > "$OUT/$variant/wall_s"
}
# RESUME=1: a variant already evaluated in OUT (by an earlier invocation) is kept, not trained again, once its model
# settings are checked against this invocation's
kept=()
to_run=()
for variant in "${SELECTED[@]}"; do
    if [ -n "${RESUME:-}" ] && [ -f "$OUT/eval/$variant/metrics.json" ]; then
        # shellcheck disable=SC2086
        python scripts/check_model_settings.py --config configs/synthetic/train.yaml \
            --saved "$OUT/eval/$variant/config.yaml" "${EXTRA[@]}" ${VARIANTS_ARGS[$variant]}
        kept+=("$variant")
    else
        to_run+=("$variant")
    fi
done
runs=()
for variant in "${SELECTED[@]}"; do
    runs+=("$variant=$OUT/eval/$variant")
done
if [ -n "${PARALLEL:-}" ]; then
    # every variant at once (a GPU, or a machine with cores to spare), each logging to OUT/VARIANT.log; a failed
    # variant is reported once all have ended. Ctrl-C or TERM stops every variant's processes (background jobs of a
    # script ignore SIGINT themselves).
    mkdir -p "$OUT"
    pids=()
    tree_pids() {  # a process and all its descendants
        local child
        echo "$1"
        for child in $(pgrep -P "$1" || true); do tree_pids "$child"; done
    }
    # shellcheck disable=SC2046
    trap 'kill -TERM $(for pid in "${pids[@]}"; do tree_pids "$pid"; done) 2> /dev/null; exit 130' INT TERM
    for variant in "${to_run[@]}"; do
        run_variant "$variant" > "$OUT/$variant.log" 2>&1 &
        pids+=($!)
    done
    failed=()
    for i in "${!to_run[@]}"; do
        wait "${pids[$i]}" || failed+=("${to_run[$i]}")
    done
    trap - INT TERM
    if [ ${#failed[@]} -gt 0 ]; then
        for variant in "${failed[@]}"; do
            echo "variant $variant failed; the end of $OUT/$variant.log:" >&2
            tail -n 20 "$OUT/$variant.log" >&2
        done
        exit 1
    fi
else
    for variant in "${to_run[@]}"; do
        run_variant "$variant"
    done
fi
mkdir -p "$DOCS"
python scripts/quickstart_report.py --runs "${runs[@]}" --out "$OUT" --plot "$DOCS/memory_experiment.png"
cp "$OUT/results.json" "$DOCS/memory_experiment.json"
python scripts/temp_crossing.py --split "$DATA/TEMP" --runs "${runs[@]}" --out "$OUT/temp_crossing.md"
# does each model use the masks it remembers? (own vs true masks in the local memory, fresh TEMP videos)
: > "$OUT/memory_oracle.md"
for run in "${runs[@]}"; do
    variant=${run%%=*}
    [ "$variant" = no_local_memory ] && continue  # no local memory: nothing to write a mask into
    # shellcheck disable=SC2086
    python scripts/memory_oracle.py --config configs/synthetic/train.yaml \
        --checkpoint "$OUT/$variant/checkpoints/last.pt" --videos "$ORACLE_VIDEOS" --out "$OUT/oracle_$variant.md" \
        "${EXTRA[@]}" ${VARIANTS_ARGS[$variant]} > /dev/null
    { echo "$variant:"; tail -n +2 "$OUT/oracle_$variant.md"; echo; } >> "$OUT/memory_oracle.md"
done
elapsed=$(( $(date +%s) - start ))
resumed=""
if [ ${#kept[@]} -gt 0 ]; then
    resumed=" in this invocation; kept from an earlier one (RESUME=1):"
    for variant in "${kept[@]}"; do
        resumed+=" $variant ($(cat "$OUT/$variant/wall_s" 2> /dev/null || echo "time unknown") s)"
    done
fi
{
    echo "# The memory experiment"
    echo
    stages=""
    [ "$RULE_MINUTES" = 0 ] || stages+=" RULE=$RULE_MINUTES RULE_MIX='$RULE_MIX'${RULE_ARGS:+ RULE_ARGS='$RULE_ARGS'}"
    [ "$OWN_MINUTES" = 0 ] || stages+=" OWN=$OWN_MINUTES OWN_ARGS='$OWN_ARGS'"
    echo "Command: \`RECIPE=$RECIPE MINUTES=$MINUTES APPEARANCE=$APPEARANCE VISION=$VISION_MINUTES MIX='$MIX' FIRST_MIX='$FIRST_MIX' POS_EMBED=$POS_EMBED STAGE1_ARGS='$STAGE1_ARGS' STAGE2_ARGS='$STAGE2_ARGS'$stages${MODEL_ARGS:+ MODEL_ARGS='$MODEL_ARGS'}${VARIANTS:+ VARIANTS='$VARIANTS'}${PARALLEL:+ PARALLEL=1}${RESUME:+ RESUME=1} bash scripts/memory_experiment.sh\`  "
    echo "Machine: $(python -c 'from locater.bench import machine_description as m; print(m())')  "
    echo "Wall time: ${elapsed} s${resumed} for ${#runs[@]} variants${PARALLEL:+ trained at once} x ($MINUTES min of training: $VISION_MINUTES pre-training the vision encoder, $APPEARANCE on one-frame clips of FIRST_MIX, $RULE_MINUTES on one-frame clips at the first frame, $OWN_MINUTES on the model's own masks, + evaluation of 4 splits x $NUM_TEST videos and the oracle on $ORACLE_VIDEOS)."
    echo
    echo "Mean IoU / overall IoU (%) on the synthetic test splits:"
    echo
    cat "$OUT/results.md"
    echo
    echo "![mean IoU per split](memory_experiment.png)"
    echo
    cat "$OUT/temp_crossing.md"
    echo
    echo "TEMP on $ORACLE_VIDEOS fresh videos with each model's own masks or the true masks in its local memory (scripts/memory_oracle.py): mean IoU / precision@0.7 in % (frames)"
    echo
    cat "$OUT/memory_oracle.md"
} > "$DOCS/memory_experiment.md"
echo "memory experiment finished in ${elapsed} s"
