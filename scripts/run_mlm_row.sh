#!/usr/bin/env bash
# Run one masked-LM (BERT) row: train with a validation every VALIDATE_INTERVAL updates ->
# results-mlm.json (the validation-loss curve, pn_fairseq/evaluation/mlm_results.py).
# Usage: scripts/run_mlm_row.sh DATASET ROW   (the per-row scripts under scripts/bert-*/ call this)
# Hyper-parameters: configs/DATASET/common.conf + ROW.conf, each value set by `recipe FLAG VALUE...
# '# source'`; DRY_RUN=1 prints them with their sources, then the commands, and runs nothing.
# The schedule follows the run's length: --total-num-update is MAX_UPDATE (linear decay to 0 at
# the end) and the warm-up WARMUP_PERCENT % of it.
# Environment: DATA SAVE_DIR MAX_UPDATE SEED SEEDS=1,2,3 EXTRA_ARGS CPU=1 DRY_RUN=1 LOG_INTERVAL
# VALIDATE_INTERVAL; each is checked before anything is created.
# Reruns: fairseq-train resumes from checkpoint_last.pt by itself; train.done (the command of a
# finished training, then its seconds) makes a finished run skip training, and a finished run
# whose results-mlm.json exists is reused. A SAVE_DIR trained by another command is refused.
# A training that stops on a non-finite loss or gradient is a result (the row's "diverged").
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATASET=${1:?usage: run_mlm_row.sh DATASET ROW}
ROW=${2:?usage: run_mlm_row.sh DATASET ROW}
TAG="[$DATASET/$ROW]"
log() { echo "$TAG $*" >&2; }
die() { echo "$TAG error: $*" >&2; exit 1; }

# recipe, MLM_TASK_ARGS, mlm_schedule: what bench/bench_train.py shares with this driver.
# shellcheck source=recipe_lib.sh
source "$REPO/scripts/recipe_lib.sh"

# shellcheck source=lm_row_lib.sh
source "$REPO/scripts/lm_row_lib.sh"
lm_row_configure

DATA=${DATA:-$REPO/data-bin/$DATASET_DIR}
MAX_UPDATE=${MAX_UPDATE:-$DEFAULT_MAX_UPDATE}
VALIDATE_INTERVAL=${VALIDATE_INTERVAL:-$DEFAULT_VALIDATE_INTERVAL}
EXTRA_ARGS=${EXTRA_ARGS:-}
CPU=${CPU:-0}
DRY_RUN=${DRY_RUN:-0}
LOG_INTERVAL=${LOG_INTERVAL:-50}
positive MAX_UPDATE "$MAX_UPDATE" 1200
positive VALIDATE_INTERVAL "$VALIDATE_INTERVAL" 100
[[ -z ${SEED:-} ]] || positive SEED "$SEED" 2
positive LOG_INTERVAL "$LOG_INTERVAL" 50
switch CPU "$CPU" "trains on the CPU"
switch DRY_RUN "$DRY_RUN" "prints the recipe and the commands and runs none"
mlm_check_warmup_percent

lm_row_seeds "${BASH_SOURCE[0]}"
SAVE_DIR=${SAVE_DIR:-$REPO/checkpoints/$DATASET/$ROW}
SEED=${SEED:-1}

if [[ $DRY_RUN != 1 ]]; then
  [[ -f $DATA/dict.txt && -f $DATA/train.bin && -f $DATA/valid.bin ]] \
    || die "no binarized masked-LM data at $DATA: run data-prep/prepare-$DATA_PREP.sh first, or set DATA=<data-bin dir>"
  [[ ! -e $SAVE_DIR || -d $SAVE_DIR ]] || die "SAVE_DIR=$SAVE_DIR is a file, not a directory"
  command -v "$PYTHON" > /dev/null || die "PYTHON=$PYTHON is not a command: unset it to use the project's venv"
fi

mlm_schedule "$MAX_UPDATE" "$VALIDATE_INTERVAL"

lm_row_traps
cpu_flag=(); [[ $CPU == 1 ]] && cpu_flag=(--cpu)
read -r -a extra <<< "$EXTRA_ARGS"
train_cmd=(fairseq-train "$DATA" --user-dir "$REPO/pn_fairseq" "${MLM_TASK_ARGS[@]}"
  "${TRAIN_ARGS[@]}" --save-dir "$SAVE_DIR" --seed "$SEED" --log-format json --log-interval "$LOG_INTERVAL"
  --no-progress-bar "${cpu_flag[@]}" "${extra[@]}")
signature=$(show "${train_cmd[@]}")
RESULTS=$SAVE_DIR/results-mlm.json
DONE=$SAVE_DIR/train.done
write_cmd=("$PYTHON" -m pn_fairseq.evaluation.mlm_results write --train-log "$SAVE_DIR/train.log" --output "$RESULTS"
  --row "$ROW" --dataset "$DATASET" --seed "$SEED" --max-update "$MAX_UPDATE")

if [[ $DRY_RUN == 1 ]]; then
  echo "# $DATASET/$ROW: configs/$DATASET/common.conf + $ROW.conf (value, then its source)"
  for line in "${RECIPE[@]}"; do echo "#   ${line/	/   }"; done
  echo "$signature 2>&1 | tee -a $(printf '%q' "$SAVE_DIR/train.log")"
  echo "$(show "${write_cmd[@]}") --train-command '<the fairseq-train command above>'"
  exit 0
fi

lm_row_reuse_or_refuse "$signature" "$DONE" "$RESULTS" "delete $SAVE_DIR to retrain"
if [[ ! -f $DONE ]]; then
  cleanup+=("$DONE.tmp")
  log "training, validating every $VALIDATE_INTERVAL updates (log: $SAVE_DIR/train.log)"
  start=$SECONDS
  outcome=finished
  fg_child "${train_cmd[@]}" > >(tee -a "$SAVE_DIR/train.log") 2>&1 || outcome=failed
  # A divergence is this row's result (mlm_results finds it in the log); any other failure stops here.
  [[ $outcome == finished ]] || "$PYTHON" -m pn_fairseq.evaluation.mlm_results check-diverged "$SAVE_DIR/train.log" \
    || die "training failed (log: $SAVE_DIR/train.log; rerun to resume from checkpoint_last.pt)"
  printf '%s\n%s\n%s\n' "$signature" "$((SECONDS - start))" "$outcome" > "$DONE.tmp" && mv "$DONE.tmp" "$DONE"
fi
# train.done's third line: "failed" for a training that diverged.
diverged=0; [[ $(sed -n 3p "$DONE") == failed ]] && diverged=1
(( diverged == 0 )) || write_cmd+=(--failed)
"${write_cmd[@]}" --train-command "$signature" || die "could not write $RESULTS"
if (( diverged )); then log "done: the training diverged, as recorded in $RESULTS"; else log "done: $RESULTS"; fi
