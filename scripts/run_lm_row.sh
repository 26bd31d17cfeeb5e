#!/usr/bin/env bash
# Run one language-model row end to end: train -> fairseq-eval-lm on the test split -> results-lm.json.
# Usage: scripts/run_lm_row.sh DATASET ROW   (the per-row scripts under scripts/lm-*/, scripts/ptb/,
# scripts/wikitext103/ call this). Hyper-parameters: configs/DATASET/common.conf + ROW.conf.
# Environment: DATA SAVE_DIR MAX_UPDATE SEED SEEDS=1,2,3 EXTRA_ARGS CPU=1 DRY_RUN=1 LOG_INTERVAL;
# each is checked before anything is created.
# Reruns: fairseq-train resumes from checkpoint_last.pt by itself; train.done (the command of a
# finished training, then its seconds) makes a finished run skip training, and a finished run whose
# results-lm.json exists is reused. A SAVE_DIR trained by another command is refused in one line.
# Perplexity: fairseq-eval-lm in eval mode (running statistics), on EVAL_CHECKPOINT (the conf says
# which: last or best), blocks of EVAL_TOKENS tokens with EVAL_CONTEXT tokens of context.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATASET=${1:?usage: run_lm_row.sh DATASET ROW}
ROW=${2:?usage: run_lm_row.sh DATASET ROW}
TAG="[$DATASET/$ROW]"
log() { echo "$TAG $*" >&2; }
die() { echo "$TAG error: $*" >&2; exit 1; }

# shellcheck source=lm_row_lib.sh
source "$REPO/scripts/lm_row_lib.sh"
lm_row_configure

DATA=${DATA:-$REPO/data-bin/$DATASET_DIR}
MAX_UPDATE=${MAX_UPDATE:-$DEFAULT_MAX_UPDATE}
EXTRA_ARGS=${EXTRA_ARGS:-}
CPU=${CPU:-0}
DRY_RUN=${DRY_RUN:-0}
LOG_INTERVAL=${LOG_INTERVAL:-50}
positive MAX_UPDATE "$MAX_UPDATE" 1500
[[ -z ${SEED:-} ]] || positive SEED "$SEED" 2
positive LOG_INTERVAL "$LOG_INTERVAL" 50
switch CPU "$CPU" "trains and evaluates on the CPU"
switch DRY_RUN "$DRY_RUN" "prints the commands and runs none"

lm_row_seeds "${BASH_SOURCE[0]}"
SAVE_DIR=${SAVE_DIR:-$REPO/checkpoints/$DATASET/$ROW}
SEED=${SEED:-1}

if [[ $DRY_RUN != 1 ]]; then
  [[ -f $DATA/dict.txt && -f $DATA/train.bin ]] \
    || die "no binarized language-model data at $DATA: run data-prep/prepare-$DATA_PREP.sh first, or set DATA=<data-bin dir>"
  [[ ! -e $SAVE_DIR || -d $SAVE_DIR ]] || die "SAVE_DIR=$SAVE_DIR is a file, not a directory"
  command -v "$PYTHON" > /dev/null || die "PYTHON=$PYTHON is not a command: unset it to use the project's venv"
fi

lm_row_traps
cpu_flag=(); [[ $CPU == 1 ]] && cpu_flag=(--cpu)
read -r -a extra <<< "$EXTRA_ARGS"
train_cmd=(fairseq-train "$DATA" --user-dir "$REPO/pn_fairseq" --task language_modeling_pn --arch "$ARCH"
  "${TRAIN_ARGS[@]}" "${ROW_ARGS[@]}" --max-update "$MAX_UPDATE" --save-dir "$SAVE_DIR" --seed "$SEED"
  --log-format json --log-interval "$LOG_INTERVAL" --no-progress-bar "${cpu_flag[@]}" "${extra[@]}")
signature=$(show "${train_cmd[@]}")
CKPT=$SAVE_DIR/checkpoint_$EVAL_CHECKPOINT.pt
eval_cmd=(fairseq-eval-lm "$DATA" --user-dir "$REPO/pn_fairseq" --path "$CKPT" --gen-subset test
  --tokens-per-sample "$EVAL_TOKENS" --context-window "$EVAL_CONTEXT" --max-tokens 4096 --output-word-probs
  "${cpu_flag[@]}")
RESULTS=$SAVE_DIR/results-lm.json
DONE=$SAVE_DIR/train.done

if [[ $DRY_RUN == 1 ]]; then
  echo "$signature 2>&1 | tee -a $(printf '%q' "$SAVE_DIR/train.log")"
  echo "$(show "${eval_cmd[@]}") > $(printf '%q' "$SAVE_DIR/eval-lm.log") 2>&1"
  echo "$PYTHON -m pn_fairseq.evaluation.lm_results write --eval-log $(printf '%q' "$SAVE_DIR/eval-lm.log") --output $(printf '%q' "$RESULTS") ..."
  exit 0
fi

lm_row_reuse_or_refuse "$signature" "$DONE" "$RESULTS" "delete it to evaluate again, delete $SAVE_DIR to retrain"
if [[ ! -f $DONE ]]; then
  cleanup+=("$DONE.tmp")
  log "training (log: $SAVE_DIR/train.log)"
  start=$SECONDS
  fg_child "${train_cmd[@]}" > >(tee -a "$SAVE_DIR/train.log") 2>&1 || die "training failed (log: $SAVE_DIR/train.log)"
  printf '%s\n%s\n' "$signature" "$((SECONDS - start))" > "$DONE.tmp" && mv "$DONE.tmp" "$DONE"
fi
[[ -f $CKPT ]] || die "no $CKPT after training (EVAL_CHECKPOINT=$EVAL_CHECKPOINT)"
log "test perplexity of $(basename "$CKPT") (fairseq-eval-lm, eval mode)"
fg_child "${eval_cmd[@]}" > "$SAVE_DIR/eval-lm.log" 2>&1 || { tail -20 "$SAVE_DIR/eval-lm.log" >&2; die "fairseq-eval-lm failed (log: $SAVE_DIR/eval-lm.log)"; }
updates=$("$PYTHON" -c 'import sys, torch; print(torch.load(sys.argv[1], map_location="cpu", weights_only=False)["optimizer_history"][-1]["num_updates"])' "$CKPT")
"$PYTHON" -m pn_fairseq.evaluation.lm_results write --eval-log "$SAVE_DIR/eval-lm.log" --train-log "$SAVE_DIR/train.log" \
  --output "$RESULTS" --row "$ROW" --dataset "$DATASET" --seed "$SEED" --checkpoint "$(basename "$CKPT")" \
  --updates "$updates" --wall-time "$(sed -n 2p "$DONE")" --paper "${PAPER_PPL:-}" --train-command "$signature" \
  || die "could not write $RESULTS"
log "done: $RESULTS"
