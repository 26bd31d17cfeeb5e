# What the language-model and masked-LM row drivers share (sourced by scripts/run_lm_row.sh and
# scripts/run_mlm_row.sh after they set REPO, DATASET, ROW, TAG, log and die): the row's
# configuration, the checks of the environment, SEEDS, the interrupt handler, and the rule that
# reuses a finished run or refuses a SAVE_DIR trained by another command.

# Source configs/DATASET/{common,ROW}.conf; put the project's venv on PATH.
lm_row_configure() {
  CONF_DIR=$REPO/configs/$DATASET
  [[ -f $CONF_DIR/common.conf ]] || die "unknown dataset '$DATASET' (configs/$DATASET/common.conf missing)"
  [[ -f $CONF_DIR/$ROW.conf ]] || die "unknown row '$ROW' for $DATASET (rows: $(cd "$CONF_DIR" && ls *.conf | grep -v common | sed 's/\.conf//' | tr '\n' ' '))"
  # shellcheck source=/dev/null
  source "$CONF_DIR/common.conf"
  # shellcheck source=/dev/null
  source "$CONF_DIR/$ROW.conf"
  [[ -x $REPO/.venv/bin/fairseq-train ]] && export PATH="$REPO/.venv/bin:$PATH"
  PYTHON=${PYTHON:-python}
}

positive() { [[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1=$2 is not a positive integer (e.g. $1=$3)"; }
switch() { [[ $2 == 0 || $2 == 1 ]] || die "$1=$2: expected 0 or 1 ($1=1 $3)"; }

# SEEDS=1,2,3: the driver SCRIPT once per seed with SEED=k SAVE_DIR=<run dir>/seed<k>, then exit.
lm_row_seeds() {  # SCRIPT
  [[ -n ${SEEDS:-} ]] || return 0
  [[ $SEEDS =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "SEEDS=$SEEDS: expected positive integers separated by commas, e.g. SEEDS=1,2,3"
  [[ -z ${SEED:-} ]] || die "both SEED=$SEED and SEEDS=$SEEDS are set: use SEEDS alone (SEED=k is one run)"
  local base=${SAVE_DIR:-$REPO/checkpoints/$DATASET/$ROW} seed seeds
  IFS=, read -r -a seeds <<< "$SEEDS"
  for seed in "${seeds[@]}"; do
    log "seed $seed of $SEEDS -> $base/seed$seed"
    SEEDS='' SEED=$seed SAVE_DIR=$base/seed$seed bash "$1" "$DATASET" "$ROW" \
      || die "seed $seed failed (the finished seeds are kept; rerun to resume)"
  done
  exit 0
}

# SIGINT/TERM/HUP stop the tools (scripts/children.sh), remove the files in `cleanup`, and say how to resume.
lm_row_traps() {
  # shellcheck source=children.sh
  source "$REPO/scripts/children.sh"
  cleanup=()
  stop() {
    trap '' INT TERM HUP
    stop_children
    (( ${#cleanup[@]} == 0 )) || rm -f "${cleanup[@]}"
    echo "$TAG interrupted ($1): rerun the same command to resume from $SAVE_DIR/checkpoint_last.pt" >&2
    exit "$2"
  }
  trap 'stop SIGINT 130' INT
  trap 'stop SIGTERM 143' TERM
  trap 'stop SIGHUP 129' HUP
}

show() { printf '%q ' "$@" | sed 's/ $//'; }

# A finished run (train.done and RESULTS) is printed and the driver exits; a SAVE_DIR whose
# finished training had other settings is refused; an unfinished one goes on (fairseq resumes).
# Settings, not the text: --user-dir and the data path name the code's directory, which a queue's
# new code snapshot changes (pn_fairseq/evaluation/row_state.py ignores both).
lm_row_reuse_or_refuse() {  # SIGNATURE DONE RESULTS WHAT_TO_DELETE
  mkdir -p "$SAVE_DIR"
  if [[ -f $2 && $(head -n 1 "$2") != "$1" ]]; then
    local why status=0
    why=$("$PYTHON" -m pn_fairseq.cli.row_results same-training "$2" -- "${train_cmd[@]}") || status=$?
    (( status == 0 )) || die "$SAVE_DIR holds a training finished with another command ($2${why:+: $why}): use another SAVE_DIR, or delete it to retrain"
  fi
  if [[ -f $2 && -f $3 ]]; then
    log "already finished: $3 ($4)"
    cat "$3"
    exit 0
  fi
  rm -f "$3"
}
