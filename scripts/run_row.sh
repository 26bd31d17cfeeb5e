#!/usr/bin/env bash
# Run one table row end to end: train -> average -> generate -> score -> results.json.
# Usage: scripts/run_row.sh DATASET ROW   (the per-row scripts under scripts/ call this)
# Hyper-parameters: configs/DATASET/common.conf + configs/DATASET/ROW.conf.
# Environment overrides (docs/rows.md "One command per table row"): DATA SAVE_DIR MAX_UPDATE MAX_EPOCH
# UPDATE_FREQ SEED SEEDS EXTRA_ARGS CPU=1 NPROC DRY_RUN=1 LOG_INTERVAL ALLOW_BLEU_MISMATCH=1 SCORE_LAST=1;
# each is checked before anything is created.
# A rerun reuses what matches what is asked: results.json records the training command and the
# decoding settings it answers, train.done the command of a finished training (train.cmd that of
# the latest attempt). A larger MAX_UPDATE / MAX_EPOCH continues the run from checkpoint_last.pt;
# any other difference stops with one line naming it (pn_fairseq/evaluation/row_state.py decides).
# NPROC=N trains on N data-parallel workers, always passed as --distributed-world-size N (fairseq's
# default is every visible GPU): on GPU fairseq spawns them itself; with CPU=1 this script starts
# one process per rank (gloo, legacy_ddp), rank 0 logging to train.log and rank R to
# train.rankR.log (docs/gpus-and-scale.md "Scale: update frequency, several workers, resume").
# SEEDS=1,2,3 runs the row once per seed, SEED=k into $SAVE_DIR/seed<k>/.
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

# Every environment variable is checked here, before anything is created: a typo stops with
# one line instead of reaching fairseq's argparse (whose usage text would land in a run's log).
DATA=${DATA:-$REPO/data-bin/$DATASET_DIR}
MAX_UPDATE=${MAX_UPDATE:-${DEFAULT_MAX_UPDATE:-}}
MAX_EPOCH=${MAX_EPOCH:-${DEFAULT_MAX_EPOCH:-}}
UPDATE_FREQ=${UPDATE_FREQ:-1}
EXTRA_ARGS=${EXTRA_ARGS:-}
CPU=${CPU:-0}
NPROC=${NPROC:-1}
DRY_RUN=${DRY_RUN:-0}
LOG_INTERVAL=${LOG_INTERVAL:-50}
ALLOW_BLEU_MISMATCH=${ALLOW_BLEU_MISMATCH:-0}
SCORE_LAST=${SCORE_LAST:-${DEFAULT_SCORE_LAST:-0}}
positive() {  # NAME VALUE EXAMPLE
  [[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1=$2 is not a positive integer (e.g. $1=$3)"
}
switch() {  # NAME VALUE MEANING
  [[ $2 == 0 || $2 == 1 ]] || die "$1=$2: expected 0 or 1 ($1=1 $3)"
}
[[ -z $MAX_UPDATE ]] || positive MAX_UPDATE "$MAX_UPDATE" 600
[[ -z $MAX_EPOCH ]] || positive MAX_EPOCH "$MAX_EPOCH" 50
positive UPDATE_FREQ "$UPDATE_FREQ" 16
[[ -z ${SEED:-} ]] || positive SEED "$SEED" 2
positive NPROC "$NPROC" 8
positive LOG_INTERVAL "$LOG_INTERVAL" 50
switch CPU "$CPU" "trains and decodes on the CPU"
switch DRY_RUN "$DRY_RUN" "prints the commands and runs none"
switch ALLOW_BLEU_MISMATCH "$ALLOW_BLEU_MISMATCH" "accepts fairseq's and sacrebleu's BLEU disagreeing"
switch SCORE_LAST "$SCORE_LAST" "also scores checkpoint_last.pt beside the averaged checkpoint"

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

SAVE_DIR=${SAVE_DIR:-$REPO/checkpoints/$DATASET/$ROW}
SEED=${SEED:-1}
SRC=${LANGS[1]} TGT=${LANGS[3]}
AVG_KIND=${AVG_KIND:-epoch}
RAW_REF=${RAW_REF:-$DATA/text/test.raw.$TGT}

# The GPUs torch will use: CUDA_VISIBLE_DEVICES read as torch reads it (ordinals or GPU-/MIG-
# UUIDs up to the first invalid or negative entry, an ordinal beyond the machine's GPUs ending
# the list too; a repeated entry hides them all; "" and "-1" none), else every GPU of nvidia-smi -L.
visible_gpus() {
  local all entries entry n=0 seen=" "
  all=$( (nvidia-smi -L 2>/dev/null || true) | grep -c '^GPU' || true)
  if [[ ! -v CUDA_VISIBLE_DEVICES ]]; then echo "$all"; return; fi
  IFS=, read -r -a entries <<< "$CUDA_VISIBLE_DEVICES"
  for entry in "${entries[@]}"; do
    entry=${entry//[[:space:]]/}
    if [[ $CUDA_VISIBLE_DEVICES == GPU-* || $CUDA_VISIBLE_DEVICES == MIG-* ]]; then
      [[ $entry == "${CUDA_VISIBLE_DEVICES:0:4}"* ]] || break
    else
      [[ $entry =~ ^\+?([0-9]+) ]] || break
      entry=$((10#${BASH_REMATCH[1]}))
      (( entry < all )) || break
    fi
    [[ $seen != *" $entry "* ]] || { echo 0; return; }
    seen+="$entry "
    n=$((n + 1))
  done
  echo "$n"
}

# DRY_RUN prints the commands on any machine: no GPU, core or data checks.
if [[ $DRY_RUN != 1 ]]; then
  if (( NPROC > 1 )) && [[ $CPU == 1 ]]; then
    cores=$(nproc 2>/dev/null || echo 1)
    (( NPROC <= cores )) || die "NPROC=$NPROC but this machine has $cores CPU cores: use NPROC<=$cores (each worker needs a core), or UPDATE_FREQ to keep the batch on fewer workers"
  elif (( NPROC > 1 )); then
    gpus=$(visible_gpus)
    where=""; [[ -v CUDA_VISIBLE_DEVICES ]] && where=" (CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES)"
    (( gpus > 0 )) || die "NPROC=$NPROC but no GPU is visible$where: make GPUs visible, or use CPU=1 (NPROC processes on the CPU)"
    (( NPROC <= gpus )) || die "NPROC=$NPROC but $gpus GPU(s) are visible$where: use NPROC<=$gpus, UPDATE_FREQ to keep the batch on fewer GPUs, or CPU=1"
  fi
  [[ -f $DATA/dict.$SRC.txt && -f $DATA/train.$SRC-$TGT.$SRC.bin ]] \
    || die "no binarized data at $DATA: run data-prep/prepare-*.sh for $DATASET first, or set DATA=<data-bin dir>"
  [[ $SCORING != wmt || -f $RAW_REF ]] \
    || die "no raw test references at $RAW_REF (WMT14 scoring needs them): rerun data-prep/prepare-wmt14.sh, or set RAW_REF=<file>"
  [[ ! -e $SAVE_DIR || -d $SAVE_DIR ]] || die "SAVE_DIR=$SAVE_DIR is a file, not a directory"
  parent=$SAVE_DIR; while [[ ! -e $parent ]]; do parent=$(dirname "$parent"); done
  [[ -w $parent ]] || die "SAVE_DIR=$SAVE_DIR cannot be created or written ($parent is not writable): set SAVE_DIR=<a writable dir>"
  command -v "$PYTHON" > /dev/null || die "PYTHON=$PYTHON is not a command: unset it to use the project's venv"
fi

# Files an interrupted run must not leave behind, and the background tools the signal handler
# stops (scripts/children.sh). The handler runs inside whatever redirection is active (decoding's
# stderr goes to its log), so it reports on a copy of the script's own stderr.
# shellcheck source=children.sh
source "$REPO/scripts/children.sh"
cleanup=()
phase=""
exec {STDERR}>&2
stop() {  # SIGNAL EXIT_STATUS
  trap '' INT TERM HUP
  stop_children
  (( ${#cleanup[@]} == 0 )) || rm -f "${cleanup[@]}"
  case $phase in
    training) echo "$TAG interrupted ($1): rerun the same command to resume from $SAVE_DIR/checkpoint_last.pt" >&"$STDERR" ;;
    evaluation) echo "$TAG interrupted ($1): the training is finished; rerun the same command to decode and score" >&"$STDERR" ;;
    *) echo "$TAG interrupted ($1)" >&"$STDERR" ;;
  esac
  exit "$2"
}
trap 'stop SIGINT 130' INT
trap 'stop SIGTERM 143' TERM
trap 'stop SIGHUP 129' HUP

# In DRY_RUN mode print each command, fully expanded and shell-quoted, and run nothing.
show() { printf '%q ' "$@" | sed 's/ $//'; }
run() {
  if [[ $DRY_RUN == 1 ]]; then show "$@"; echo; else fg_child "$@"; fi
}

cpu_flag=(); [[ $CPU == 1 ]] && cpu_flag=(--cpu)
read -r -a extra <<< "$EXTRA_ARGS"
# translation_pn: fairseq's translation task whose dummy batches (an out-of-memory batch, a
# worker out of data) leave the norms' statistics alone. --distributed-world-size always: with
# 1 fairseq trains in this process (CPU or one GPU, its default there too); without it, fairseq
# would take every visible GPU, i.e. NPROC x the recipe's batch.
train_cmd=(fairseq-train "$DATA" --user-dir "$REPO/pn_fairseq" --task translation_pn --arch "$ARCH" "${LANGS[@]}"
  "${TRAIN_ARGS[@]}" "${ROW_ARGS[@]}" --save-dir "$SAVE_DIR" --seed "$SEED" --update-freq "$UPDATE_FREQ"
  --log-format json --log-interval "$LOG_INTERVAL" --no-progress-bar "${cpu_flag[@]}")
[[ -n $MAX_UPDATE ]] && train_cmd+=(--max-update "$MAX_UPDATE")
[[ -n $MAX_EPOCH ]] && train_cmd+=(--max-epoch "$MAX_EPOCH")
train_cmd+=(--distributed-world-size "$NPROC")
(( NPROC > 1 )) && [[ $CPU == 1 ]] && train_cmd+=(--distributed-backend gloo --ddp-backend legacy_ddp --distributed-no-spawn)
train_cmd+=("${extra[@]}")
signature=$(show "${train_cmd[@]}")
decoding_args=(--beam "$BEAM" --lenpen "$LENPEN" --avg-last "$AVG_LAST" --avg-kind "$AVG_KIND" --scoring "$SCORING")

# The CPU multi-process launch fairseq's own launcher cannot do (it needs CUDA devices):
# one process per rank on a free local port; any failure stops all ranks.
train() {
  if (( NPROC == 1 )) || [[ $CPU != 1 ]]; then
    fg_child "${train_cmd[@]}" > >(tee -a "$SAVE_DIR/train.log") 2>&1
    return
  fi
  local port pids=() rank status=0
  port=$($PYTHON -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  log "starting $NPROC CPU workers (gloo on 127.0.0.1:$port; ranks 1.. log to $SAVE_DIR/train.rankR.log)"
  for ((rank = NPROC - 1; rank >= 0; rank--)); do
    local cmd=("${train_cmd[@]}" --distributed-rank "$rank" --distributed-init-method "tcp://127.0.0.1:$port")
    if (( rank == 0 )); then
      spawn "${cmd[@]}" > >(tee -a "$SAVE_DIR/train.log") 2>&1
    else
      spawn "${cmd[@]}" >> "$SAVE_DIR/train.rank$rank.log" 2>&1
    fi
    pids+=($!)
  done
  for pid in "${pids[@]}"; do
    if ! wait "$pid"; then status=1; kill "${pids[@]}" 2>/dev/null || true; fi
  done
  children=()
  return $status
}

RESULTS=$SAVE_DIR/results.json
DONE=$SAVE_DIR/train.done
ATTEMPT=$SAVE_DIR/train.cmd
if [[ $DRY_RUN == 1 ]]; then
  if (( NPROC > 1 )) && [[ $CPU == 1 ]]; then
    for ((rank = 0; rank < NPROC; rank++)); do
      out=$SAVE_DIR/train.log; (( rank > 0 )) && out=$SAVE_DIR/train.rank$rank.log
      echo "$signature --distributed-rank $rank --distributed-init-method tcp://127.0.0.1:PORT >> $(printf '%q' "$out") 2>&1 &"
    done
  else
    echo "$signature 2>&1 | tee -a $(printf '%q' "$SAVE_DIR/train.log")"
  fi
else
  # What the run directory allows (pn_fairseq/evaluation/row_state.py): reuse results.json, decode a finished
  # training again, train (from scratch, resuming, or continuing to a larger MAX_UPDATE), or a
  # one-line refusal. Before training it parses the command as fairseq-train would, so a bad
  # EXTRA_ARGS flag stops here, before a directory or a log line is written.
  errors=$(mktemp)
  status=0
  check=$("$PYTHON" -m pn_fairseq.cli.row_results check-run --save-dir "$SAVE_DIR" "${decoding_args[@]}" \
    -- "${train_cmd[@]}" 2> "$errors") || status=$?
  details=$(tail -n 3 "$errors"); rm -f "$errors"
  (( status != 3 )) || die "$check"
  (( status == 0 )) || { echo "$details" >&2; die "could not check $SAVE_DIR (python -m pn_fairseq.cli.row_results check-run failed)"; }
  action=${check%%$'\t'*} why=${check#*$'\t'}
  # check-run compares the decoding of the averaged checkpoint only: a run finished without
  # SCORE_LAST=1 is decoded again to add the last checkpoint's score.
  if [[ $action == reuse && $SCORE_LAST == 1 ]] && (( AVG_LAST >= 2 )) && ! grep -q '"last_checkpoint"' "$RESULTS"; then
    action=decode why="SCORE_LAST=1 and $RESULTS has no last-checkpoint score: decoding again"
  fi
  if [[ $action == reuse ]]; then
    log "already finished: $RESULTS ($why; delete it to score again, delete $SAVE_DIR to retrain)"
    cat "$RESULTS"
    exit 0
  fi
  mkdir -p "$SAVE_DIR"
  # results.json exists only while it answers the run's settings: pn-results must not report an
  # old one while the run trains on or is decoded again.
  rm -f "$RESULTS"
  if [[ $action == train ]]; then
    # fairseq-train resumes from checkpoint_last.pt by itself, but a resumed run that already
    # reached --max-update still takes one more update: train.done (the exact command of a
    # training that exited 0, then its seconds) makes a finished run skip training altogether.
    earlier=0; [[ -f $DONE ]] && earlier=$(sed -n 2p "$DONE")
    rm -f "$DONE"
    phase=training
    cleanup+=("$ATTEMPT.tmp" "$DONE.tmp")
    printf '%s\n' "$signature" > "$ATTEMPT.tmp" && mv "$ATTEMPT.tmp" "$ATTEMPT"
    log "$why (log: $SAVE_DIR/train.log)"
    start=$SECONDS
    train || die "training failed (log: $SAVE_DIR/train.log)"
    printf '%s\n%s\n' "$signature" "$((earlier + SECONDS - start))" > "$DONE.tmp" && mv "$DONE.tmp" "$DONE"
  else
    log "$why"
  fi
  phase=evaluation
fi
train_time=0
[[ -f $DONE ]] && train_time=$(sed -n 2p "$DONE")

# Average the last AVG_LAST epoch checkpoints (AVG_KIND=update: checkpoint_E_U.pt files),
# fewer if a short run saved fewer.
CKPT=$SAVE_DIR/checkpoint_last.pt
n_avg=$AVG_LAST
if [[ $DRY_RUN != 1 ]]; then
  if [[ $AVG_KIND == update ]]; then saved=("$SAVE_DIR"/checkpoint_+([0-9])_+([0-9]).pt)
  else saved=("$SAVE_DIR"/checkpoint+([0-9]).pt); fi
  have=${#saved[@]}
  if (( have < n_avg )); then
    # a recipe that scores the last checkpoint (AVG_LAST=1) loses nothing when a short run saved
    # no epoch checkpoint: only an average of fewer checkpoints than the recipe's is worth a word
    (( AVG_LAST < 2 )) || log "warning: $have $AVG_KIND checkpoint(s) for the $AVG_LAST the recipe averages; averaging $have"
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
# multiple of it (default 8), i.e. the longest test sentences (docs/troubleshooting.md).
gen_cmd=(fairseq-generate "$DATA" --user-dir "$REPO/pn_fairseq" --path "$CKPT" "${LANGS[@]}"
  --gen-subset test --beam "$BEAM" --lenpen "$LENPEN" --remove-bpe --batch-size 128
  --required-batch-size-multiple 1 "${cpu_flag[@]}")
GEN_OUT=$SAVE_DIR/generate-test.txt
if [[ $DRY_RUN == 1 ]]; then
  echo "$(show "${gen_cmd[@]}") > $(printf '%q' "$GEN_OUT")"
else
  log "decoding the test set with $(basename "$CKPT") (beam $BEAM, lenpen $LENPEN)"
  cleanup+=("$GEN_OUT.tmp")
  fg_child "${gen_cmd[@]}" > "$GEN_OUT.tmp" 2> "$SAVE_DIR/generate-test.log" \
    || { tail -20 "$SAVE_DIR/generate-test.log" >&2; rm -f "$GEN_OUT.tmp"; die "fairseq-generate failed (log: $SAVE_DIR/generate-test.log)"; }
  mv "$GEN_OUT.tmp" "$GEN_OUT"
fi

# score GEN_OUT JSON: pn-score with the row's scheme, checking every test sentence came back.
score() {
  local cmd=(pn-score --gen-output "$1" --scheme "$SCORING" --lang "$TGT" --json "$2")
  [[ $SCORING == wmt ]] && cmd+=(--raw-ref "$RAW_REF")
  [[ $DRY_RUN != 1 ]] && cmd+=(--expected-sentences "$($PYTHON -m pn_fairseq.cli.row_results count-test "$DATA" "$SRC" "$TGT")")
  [[ $ALLOW_BLEU_MISMATCH == 1 ]] && cmd+=(--allow-mismatch)
  run "${cmd[@]}"
}
score "$GEN_OUT" "$SAVE_DIR/scores.json"

# SCORE_LAST=1 (a recipe that averages): the last checkpoint decoded and scored too, with the same
# settings, into generate-test.last.txt / scores.last.json, recorded in results.json as
# "last_checkpoint" (what averaging buys; pn-results prints the comparison when a run has it).
last_args=()
if [[ $SCORE_LAST == 1 ]] && (( n_avg >= 2 )); then
  last_gen=() prev=""
  for arg in "${gen_cmd[@]}"; do
    [[ $prev == --path ]] && arg=$SAVE_DIR/checkpoint_last.pt
    last_gen+=("$arg") prev=$arg
  done
  LAST_OUT=$SAVE_DIR/generate-test.last.txt
  if [[ $DRY_RUN == 1 ]]; then
    echo "$(show "${last_gen[@]}") > $(printf '%q' "$LAST_OUT")"
  else
    log "decoding the test set with checkpoint_last.pt too (SCORE_LAST=1)"
    cleanup+=("$LAST_OUT.tmp")
    fg_child "${last_gen[@]}" > "$LAST_OUT.tmp" 2> "$SAVE_DIR/generate-test.last.log" \
      || { tail -20 "$SAVE_DIR/generate-test.last.log" >&2; rm -f "$LAST_OUT.tmp"; die "fairseq-generate failed on checkpoint_last.pt (log: $SAVE_DIR/generate-test.last.log)"; }
    mv "$LAST_OUT.tmp" "$LAST_OUT"
  fi
  score "$LAST_OUT" "$SAVE_DIR/scores.last.json"
  last_args=(--last-scores "$SAVE_DIR/scores.last.json")
fi

# row_results also writes the sorted hypotheses and references beside results.json
# (test.hyp.txt, test.ref.txt; WMT14 also the detokenized ones): what pn-results compares.
# The training command, the limits asked and the recipe's, and the decoding settings go into
# results.json: what a rerun compares, and how pn-results tells a smoke run from the row.
texts_args=()
[[ $SCORING == wmt ]] && texts_args=(--raw-ref "$RAW_REF" --lang "$TGT")

run "$PYTHON" -m pn_fairseq.cli.row_results write --scores "$SAVE_DIR/scores.json" --row "$ROW" \
  --dataset "${RESULTS_DATASET:-$DATASET}" --paper "${PAPER_BLEU:-}" --last-checkpoint "$SAVE_DIR/checkpoint_last.pt" \
  --wall-time "$train_time" --checkpoint "$CKPT" --run-dir "$SAVE_DIR" --averaged "$n_avg" \
  "${decoding_args[@]}" --seed "$SEED" --gen-output "$GEN_OUT" "${texts_args[@]}" \
  --train-command="$signature" --max-update="$MAX_UPDATE" --max-epoch="$MAX_EPOCH" \
  --recipe-max-update="${DEFAULT_MAX_UPDATE:-}" --recipe-max-epoch="${DEFAULT_MAX_EPOCH:-}" \
  --extra-args="$EXTRA_ARGS" --update-freq "$UPDATE_FREQ" --nproc "$NPROC" "${last_args[@]}" --output "$RESULTS"
[[ $DRY_RUN == 1 ]] || log "done: $RESULTS"
