#!/usr/bin/env bash
# The seeded synthetic German-like -> English-like demo corpus (pn_dataprep/synthetic.py),
# generated locally (no network) and prepared like Multi30k: Moses tokenization (sacremoses),
# lowercasing, joint BPE (2,000 merges), fairseq-preprocess --joined-dictionary.
#
#   bash data-prep/prepare-synthetic.sh               # -> data-bin/synthetic.de-en
#   SYNTH_TRAIN=5000 SYNTH_SEED=3 bash data-prep/prepare-synthetic.sh
#
# Environment: SYNTH_SEED (1), SYNTH_TRAIN (20000), SYNTH_VALID (500), SYNTH_TEST (500),
# DEST (default data-bin/synthetic.de-en), WORK_DIR, WORKERS, BPE_MERGES (2000), KEEP_WORK, PYTHON.
set -euo pipefail
NAME=synthetic
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SYNTH_SEED="${SYNTH_SEED:-1}"
SYNTH_TRAIN="${SYNTH_TRAIN:-20000}"
SYNTH_VALID="${SYNTH_VALID:-500}"
SYNTH_TEST="${SYNTH_TEST:-500}"
BPE_MERGES="${BPE_MERGES:-2000}"
src=de
tgt=en
for v in SYNTH_SEED SYNTH_TRAIN SYNTH_VALID SYNTH_TEST; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v=${!v} is not a non-negative integer"
done
for v in SYNTH_TRAIN SYNTH_VALID SYNTH_TEST; do
    [[ ${!v} -gt 0 ]] || die "$v must be at least 1"
done

setup_dirs synthetic.de-en
TEXT="$WORK_DIR/text"
RAW="$WORK_DIR/tmp/raw"  # removed with the other intermediate files

generate() {
    dp synthetic --seed "$SYNTH_SEED" --train "$SYNTH_TRAIN" --valid "$SYNTH_VALID" --test "$SYNTH_TEST" \
        --src $src --tgt $tgt --outdir "$RAW"
}

tokenize_all() {
    local split l
    for split in train valid test; do
        for l in $src $tgt; do
            dp tokenize --lang $l --lowercase --workers "$WORKERS" --out "$TEXT/$split.tok.$l" "$RAW/$split.$l"
        done
    done
    for l in $src $tgt; do cp "$RAW/test.$l" "$TEXT/test.raw.$l"; done
}

step generate "seed=$SYNTH_SEED sizes=$SYNTH_TRAIN/$SYNTH_VALID/$SYNTH_TEST" generate
step tokenize "lowercase" tokenize_all
step learn-bpe "merges=$BPE_MERGES" learn_bpe $src $tgt
step apply-bpe "" apply_bpe $src $tgt
step binarize "" binarize $src $tgt
# The sizes asked for are exact (generation never drops a pair), so they are always checked.
CHECK_SIZES=1 publish synthetic.de-en $src $tgt "train=$SYNTH_TRAIN,valid=$SYNTH_VALID,test=$SYNTH_TEST" \
    --param "seed=$SYNTH_SEED" \
    --param "pipeline=synthetic.py, sacremoses tokenize -l LANG (escape), lowercase, joint BPE, fairseq-preprocess --joined-dictionary"
