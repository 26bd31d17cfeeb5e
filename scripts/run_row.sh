#!/usr/bin/env bash
# Run one table row end to end: train -> average -> generate -> score -> results.json.
# Usage: scripts/run_row.sh DATASET ROW   (the per-row scripts under scripts/ call this)
# Hyper-parameters: configs/DATASET/common.conf + configs/DATASET/ROW.conf.
# Environment overrides (README "Row scripts"): DATA SAVE_DIR MAX_UPDATE MAX_EPOCH
# UPDATE_FREQ SEED EXTRA_ARGS CPU=1 NPROC DRY_RUN=1 LOG_INTERVAL ALLOW_BLEU_MISMATCH=1.
# NPROC=N trains on N data-parallel workers: on GPU fairseq spawns them itself
# (--distributed-world-size N); with CPU=1 this script starts one process per rank (gloo,
# legacy_ddp), rank 0 logging to train.log and rank R to train.rankR.log.
# SEEDS=1,2,3 runs the row once per seed, SEED=k into $SAVE_DIR/seed<k>/ (README "Row scripts").
set -euo pipefail
shopt -s extglob nullglob

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATASET=${1:?usage: run_row.sh DATASET ROW}
ROW=${2:?usage: run_row.sh DATASET ROW}
TAG="[$DATASET/$ROW]"
log() { echo "$TAG $*" >&2; }
die() { echo "$TAG error: $*" >&2; exit 1; }

CONF_DIR=$REPO/configs/$DATASET
[[ -f $CONF_DIR/common.conf ]] || die "unknown dataset '$DATASET' (configs: $(ls "$REPO/configs" | tr '\n' ' '))"
[[ -f $CONF_DIR/$ROW.conf ]] || die "unknown row '$ROW' for $DATASET (rows: $(cd "$CONF_DIR" && ls *.conf | grep -v common | sed 's/\.conf//' | tr '\n' ' '))"
# shellcheck source=/dev/null
source "$CONF_DIR/common.conf"
# shellcheck source=/dev/null
source "$CONF_DIR/$ROW.conf"

# The project's venv, when there is one, so the script works without activating it.
[[ -x $REPO/.venv/bin/fairseq-train ]] && export PATH="$REPO/.venv/bin:$PATH"
PYTHON=${PYTHON:-python}

# SEEDS=1,2,3: this script once per seed, with SEED=k SAVE_DIR=<run dir>/seed<k> and SEEDS unset,
# i.e. exactly the run a plain `SEED=k SAVE_DIR=<run dir>/seed<k>` call makes (resumed, or
# skipped when finished, seed by seed). Stops at the first seed that fails.
if [[ -n ${SEEDS:-} ]]; then
  [[ $SEEDS =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] \
    || die "SEEDS=$SEEDS: expected positive integers separated by commas, e.g. SEEDS=1,2,3"
  [[ -z ${SEED:-} ]] || die "both SEED=$SEED and SEEDS=$SEEDS are set: use SEEDS alone (SEED=k is one run)"
  IFS=, read -r -a seeds <<< "$SEEDS"
  dup=$(printf '%s\n' "${seeds[@]}" | sort | uniq -d | head -n 1)
  [[ -z $dup ]] || die "SEEDS=$SEEDS: seed $dup is given twice"
  base=${SAVE_DIR:-$REPO/checkpoints/$DATASET/$ROW}
  for seed in "${seeds[@]}"; do
    log "seed $seed of $SEEDS -> $base/seed$seed"
    SEEDS='' SEED=$seed SAVE_DIR=$base/seed$seed bash "${BASH_SOURCE[0]}" "$DATASET" "$ROW" \
      || die "seed $seed failed (the finished seeds are kept; rerun to resume)"
  done
  exit 0
fi

DATA=${DATA:-$REPO/data-bin/$DATASET_DIR}
SAVE_DIR=${SAVE_DIR:-$REPO/checkpoints/$DATASET/$ROW}
MAX_UPDATE=${MAX_UPDATE:-${DEFAULT_MAX_UPDATE:-}}
MAX_EPOCH=${MAX_EPOCH:-${DEFAULT_MAX_EPOCH:-}}
UPDATE_FREQ=${UPDATE_FREQ:-1}
SEED=${SEED:-1}
EXTRA_ARGS=${EXTRA_ARGS:-}
CPU=${CPU:-0}
NPROC=${NPROC:-1}
DRY_RUN=${DRY_RUN:-0}
LOG_INTERVAL=${LOG_INTERVAL:-50}
SRC=${LANGS[1]} TGT=${LANGS[3]}

# In DRY_RUN mode print each command, fully expanded and shell-quoted, and run nothing.
show() { printf '%q ' "$@" | sed 's/ $//'; }
run() {
  if [[ $DRY_RUN == 1 ]]; then show "$@"; echo; else "$@"; fi
}

RESULTS=$SAVE_DIR/results.json
if [[ $DRY_RUN != 1 && -f $RESULTS ]]; then
  log "already finished: $RESULTS (delete it to score again; delete $SAVE_DIR to retrain)"
  cat "$RESULTS"
  exit 0
fi
if [[ $DRY_RUN != 1 ]]; then
  [[ -f $DATA/dict.$SRC.txt && -f $DATA/train.$SRC-$TGT.$SRC.bin ]] \
    || die "no binarized data at $DATA: run data-prep/prepare-*.sh for $DATASET first, or set DATA=<data-bin dir>"
  mkdir -p "$SAVE_DIR"
fi

[[ $NPROC =~ ^[1-9][0-9]*$ ]] || die "NPROC=$NPROC is not a positive integer"
if (( NPROC > 1 )); then
  if [[ $CPU == 1 ]]; then
    cores=$(nproc 2>/dev/null || echo 1)
    (( NPROC <= cores )) || die "NPROC=$NPROC but this machine has $cores CPU cores: use NPROC<=$cores (each worker needs a core), or UPDATE_FREQ to keep the batch on fewer workers"
  else
    gpus=$( (nvidia-smi -L 2>/dev/null || true) | grep -c '^GPU' || true)
    (( NPROC <= gpus )) || die "NPROC=$NPROC but $gpus GPU(s) are visible: use NPROC<=$gpus, UPDATE_FREQ to keep the batch on fewer GPUs, or CPU=1"
  fi
fi

cpu_flag=(); [[ $CPU == 1 ]] && cpu_flag=(--cpu)
read -r -a extra <<< "$EXTRA_ARGS"
# translation_pn: fairseq's translation task whose dummy batches (an out-of-memory batch, a
# worker out of data) leave the norms' statistics alone.
train_cmd=(fairseq-train "$DATA" --user-dir "$REPO/pn_fairseq" --task translation_pn --arch "$ARCH" "${LANGS[@]}"
  "${TRAIN_ARGS[@]}" "${ROW_ARGS[@]}" --save-dir "$SAVE_DIR" --seed "$SEED" --update-freq "$UPDATE_FREQ"
  --log-format json --log-interval "$LOG_INTERVAL" --no-progress-bar "${cpu_flag[@]}")
[[ -n $MAX_UPDATE ]] && train_cmd+=(--max-update "$MAX_UPDATE")
[[ -n $MAX_EPOCH ]] && train_cmd+=(--max-epoch "$MAX_EPOCH")
(( NPROC > 1 )) && train_cmd+=(--distributed-world-size "$NPROC")
(( NPROC > 1 )) && [[ $CPU == 1 ]] && train_cmd+=(--distributed-backend gloo --ddp-backend legacy_ddp --distributed-no-spawn)
train_cmd+=("${extra[@]}")

# The CPU multi-process launch fairseq's own launcher cannot do (it needs CUDA devices):
# one process per rank on a free local port; any failure stops all ranks.
train() {
  if (( NPROC == 1 )) || [[ $CPU != 1 ]]; then
    "${train_cmd[@]}" 2>&1 | tee -a "$SAVE_DIR/train.log"
    return "${PIPESTATUS[0]}"
  fi
  local port pids=() rank status=0
  port=$($PYTHON -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  log "starting $NPROC CPU workers (gloo on 127.0.0.1:$port; ranks 1.. log to $SAVE_DIR/train.rankR.log)"
  for ((rank = NPROC - 1; rank >= 0; rank--)); do
    local cmd=("${train_cmd[@]}" --distributed-rank "$rank" --distributed-init-method "tcp://127.0.0.1:$port")
    if (( rank == 0 )); then
      "${cmd[@]}" > >(tee -a "$SAVE_DIR/train.log") 2>&1 &
    else
      "${cmd[@]}" >> "$SAVE_DIR/train.rank$rank.log" 2>&1 &
    fi
    pids+=($!)
  done
  for pid in "${pids[@]}"; do
    if ! wait "$pid"; then status=1; kill "${pids[@]}" 2>/dev/null || true; fi
  done
  return $status
}

# fairseq-train resumes from checkpoint_last.pt by itself, but a resumed run that already
# reached --max-update still takes one more update; train.done (the exact command of a
# training that exited 0) makes a finished run skip training altogether.
DONE=$SAVE_DIR/train.done
signature=$(show "${train_cmd[@]}")
if [[ $DRY_RUN == 1 ]]; then
  if (( NPROC > 1 )) && [[ $CPU == 1 ]]; then
    for ((rank = 0; rank < NPROC; rank++)); do
      out=$SAVE_DIR/train.log; (( rank > 0 )) && out=$SAVE_DIR/train.rank$rank.log
      echo "$signature --distributed-rank $rank --distributed-init-method tcp://127.0.0.1:PORT >> $(printf '%q' "$out") 2>&1 &"
    done
  else
    echo "$signature 2>&1 | tee -a $(printf '%q' "$SAVE_DIR/train.log")"
  fi
elif [[ -f $DONE && $(head -n 1 "$DONE") == "$signature" ]]; then
  log "training already finished ($DONE); skipping to evaluation"
else
  log "training ($ARCH) -> $SAVE_DIR (log: $SAVE_DIR/train.log)"
  start=$SECONDS
  train || die "training failed (log: $SAVE_DIR/train.log)"
  printf '%s\n%s\n' "$signature" "$((SECONDS - start))" > "$DONE.tmp" && mv "$DONE.tmp" "$DONE"
fi
train_time=0
[[ -f $DONE ]] && train_time=$(sed -n 2p "$DONE")

# Average the last AVG_LAST epoch checkpoints (AVG_KIND=update: checkpoint_E_U.pt files),
# fewer if a short run saved fewer.
AVG_KIND=${AVG_KIND:-epoch}
CKPT=$SAVE_DIR/checkpoint_last.pt
n_avg=$AVG_LAST
if [[ $DRY_RUN != 1 ]]; then
  if [[ $AVG_KIND == update ]]; then saved=("$SAVE_DIR"/checkpoint_+([0-9])_+([0-9]).pt)
  else saved=("$SAVE_DIR"/checkpoint+([0-9]).pt); fi
  have=${#saved[@]}
  if (( have < n_avg )); then
    log "warning: $have $AVG_KIND checkpoint(s) for the $AVG_LAST the recipe averages; averaging $have"
    n_avg=$have
  fi
fi
if (( n_avg >= 2 )); then
  CKPT=$SAVE_DIR/checkpoint_avg_last$n_avg.pt
  run pn-average-checkpoints --inputs "$SAVE_DIR" "--num-$AVG_KIND-checkpoints" "$n_avg" --output "$CKPT"
else
  n_avg=1
fi

# --required-batch-size-multiple 1: fairseq main drops a last batch that is not a
# multiple of it (default 8), i.e. the longest test sentences (README, Troubleshooting).
gen_cmd=(fairseq-generate "$DATA" --user-dir "$REPO/pn_fairseq" --path "$CKPT" "${LANGS[@]}"
  --gen-subset test --beam "$BEAM" --lenpen "$LENPEN" --remove-bpe --batch-size 128
  --required-batch-size-multiple 1 "${cpu_flag[@]}")
GEN_OUT=$SAVE_DIR/generate-test.txt
if [[ $DRY_RUN == 1 ]]; then
  echo "$(show "${gen_cmd[@]}") > $(printf '%q' "$GEN_OUT")"
else
  log "decoding the test set with $(basename "$CKPT") (beam $BEAM, lenpen $LENPEN)"
  "${gen_cmd[@]}" > "$GEN_OUT.tmp" 2> "$SAVE_DIR/generate-test.log" \
    || { tail -20 "$SAVE_DIR/generate-test.log" >&2; die "fairseq-generate failed (log: $SAVE_DIR/generate-test.log)"; }
  mv "$GEN_OUT.tmp" "$GEN_OUT"
fi

score_cmd=(pn-score --gen-output "$GEN_OUT" --scheme "$SCORING" --lang "$TGT" --json "$SAVE_DIR/scores.json")
if [[ $SCORING == wmt ]]; then
  RAW_REF=${RAW_REF:-$DATA/text/test.raw.$TGT}
  score_cmd+=(--raw-ref "$RAW_REF")
fi
if [[ $DRY_RUN != 1 ]]; then
  score_cmd+=(--expected-sentences "$($PYTHON -m pn_fairseq.cli.row_results count-test "$DATA" "$SRC" "$TGT")")
fi
[[ ${ALLOW_BLEU_MISMATCH:-0} == 1 ]] && score_cmd+=(--allow-mismatch)
run "${score_cmd[@]}"

# row_results also writes the sorted hypotheses and references beside results.json
# (test.hyp.txt, test.ref.txt; WMT14 also the detokenized ones): what pn-results compares.
texts_args=()
[[ $SCORING == wmt ]] && texts_args=(--raw-ref "$RAW_REF" --lang "$TGT")

run "$PYTHON" -m pn_fairseq.cli.row_results write --scores "$SAVE_DIR/scores.json" --row "$ROW" \
  --dataset "$DATASET" --paper "${PAPER_BLEU:-}" --last-checkpoint "$SAVE_DIR/checkpoint_last.pt" \
  --wall-time "$train_time" --checkpoint "$CKPT" --run-dir "$SAVE_DIR" --averaged "$n_avg" \
  --beam "$BEAM" --lenpen "$LENPEN" --seed "$SEED" --gen-output "$GEN_OUT" "${texts_args[@]}" --output "$RESULTS"
[[ $DRY_RUN == 1 ]] || log "done: $RESULTS"
