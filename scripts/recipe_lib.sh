# How a masked-LM (BERT) row is configured: `recipe`, which its configs/<set>/*.conf call for
# every value, the task and criterion of every such row, and the schedule scaled to the run.
# Sourced by scripts/run_mlm_row.sh, which trains the rows, and by bench/bench_train.py, which must
# train the same models: one definition, so both read a .conf alike. The sourcing script defines
# die MESSAGE (a one-line error, then exit 1).

# recipe FLAG [VALUE...] '# SOURCE': one fairseq-train setting and where its value comes from.
TRAIN_ARGS=() RECIPE=()
recipe() {
  local source=${*: -1}
  [[ $# -ge 2 && $source == '#'* ]] || die "recipe $*: the last argument must be its source ('# ...')"
  TRAIN_ARGS+=("${@:1:$#-1}")
  local value shown=""
  for value in "${@:1:$#-1}"; do
    [[ $value =~ ^[A-Za-z0-9_.,:/+=-]+$ ]] || value=${value@Q}
    shown+="${shown:+ }$value"
  done
  RECIPE+=("$shown	$source")
}

# masked_lm_pn: fairseq's masked_lm whose dummy batches leave the norms' statistics alone.
MLM_TASK_ARGS=(--task masked_lm_pn --criterion masked_lm)

# The row's WARMUP_PERCENT (its .conf: $CONF_DIR/$ROW.conf) is a whole percentage, or die.
mlm_check_warmup_percent() {
  [[ $WARMUP_PERCENT =~ ^[0-9]+$ ]] || die "$CONF_DIR/$ROW.conf: WARMUP_PERCENT=$WARMUP_PERCENT is not a whole percentage"
}

# mlm_schedule MAX_UPDATE VALIDATE_INTERVAL: the schedule scaled to the run, as recipe values:
# warm-up WARMUP_PERCENT % of MAX_UPDATE (rounded, at least one update when the percentage is not
# 0), linear decay to 0 at MAX_UPDATE.
mlm_schedule() {
  local max_update=$1 validate_interval=$2 warmup
  mlm_check_warmup_percent
  warmup=$(( (max_update * WARMUP_PERCENT + 50) / 100 ))
  (( WARMUP_PERCENT == 0 || warmup > 0 )) || warmup=1
  recipe --max-update "$max_update" --total-num-update "$max_update" "# MAX_UPDATE ($MAX_UPDATE_SOURCE): the linear decay reaches 0 at the last update"
  recipe --warmup-updates "$warmup" "# $WARMUP_PERCENT % of MAX_UPDATE ($WARMUP_SOURCE)"
  recipe --validate-interval-updates "$validate_interval" "# VALIDATE_INTERVAL ($VALIDATE_SOURCE)"
}
