#!/usr/bin/env bash
# `make demo`: prepare a dataset, train and score rows, print the results table, plot
# validation loss and gather everything into one page (report.html). DATASET=synthetic (default; offline, a few minutes on 2 CPU cores) runs
# the preln and pn rows; DATASET=multi30k runs its five rows (RAW_DIR=<dir> for local files).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATASET=${DATASET:-synthetic}
OUT=${DEMO_DIR:-$REPO/demo-out/$DATASET}
log() { echo "[demo] $*" >&2; }
[[ -x $REPO/.venv/bin/fairseq-train ]] && export PATH="$REPO/.venv/bin:$PATH"

case $DATASET in
  synthetic) prep=$REPO/data-prep/prepare-synthetic.sh; rows=(preln pn); data=$REPO/data-bin/synthetic.de-en ;;
  multi30k) prep=$REPO/data-prep/prepare-multi30k.sh; rows=(postln preln bn pnv pn); data=$REPO/data-bin/multi30k.de-en ;;
  *) echo "[demo] error: DATASET must be synthetic or multi30k, got '$DATASET'" >&2; exit 1 ;;
esac
export DATA=${DATA:-$data}

log "1/5 preparing $DATASET data -> $DATA"
DEST=$DATA bash "$prep"

i=0
for row in "${rows[@]}"; do
  i=$((i + 1))
  log "2/5 row $i/${#rows[@]}: $row (train, average, decode, score) -> $OUT/$row"
  SAVE_DIR=$OUT/$row CPU=1 LOG_INTERVAL=${LOG_INTERVAL:-25} bash "$REPO/scripts/run_row.sh" "$DATASET" "$row"
done

log "3/5 results table -> $OUT/results.md"
pn-results "$OUT" --output "$OUT/results.md"

log "4/5 validation loss plot -> $OUT/valid_loss.png"
runs=(); for row in "${rows[@]}"; do runs+=("$row=$OUT/$row"); done
pn-plot --runs "${runs[@]}" --output "$OUT/valid_loss.png" --title "$DATASET: validation loss"

log "5/5 one page with the table, loss curves and figures -> $OUT/report.html"
pn-analyze report "$OUT" --out "$OUT" > /dev/null
log "done: $OUT/results.md, $OUT/valid_loss.png and the page $OUT/report.html"
echo "report: $OUT/report.html"
