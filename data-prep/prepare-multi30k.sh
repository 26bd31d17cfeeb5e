#!/usr/bin/env bash
# Multi30k task 1 De-En (train 29,000 / val 1,014 / test_2016_flickr 1,000) with the IWSLT14
# pipeline: Moses tokenization (sacremoses), lowercasing, joint BPE (10,000 merges),
# fairseq-preprocess --joined-dictionary. No length filter: every pair is kept.
#
#   bash data-prep/prepare-multi30k.sh                        # downloads the raw files
#   RAW_DIR=../shared/data/multi30k bash data-prep/prepare-multi30k.sh
#
# Environment: RAW_DIR, DEST (default data-bin/multi30k.de-en), WORK_DIR, WORKERS,
# BPE_MERGES (10000), CHECK_SIZES (1), MIRROR, KEEP_WORK, PYTHON; see data-prep/README.md.
set -euo pipefail
NAME=multi30k
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BPE_MERGES="${BPE_MERGES:-10000}"
src=de
tgt=en
mapfile -t RAW_FILES < <(multi30k_raw_files $src $tgt)

setup_dirs multi30k.de-en
TEXT="$WORK_DIR/text"

# The fetch/verify and tokenize functions are lib.sh's multi30k_*, shared with prepare-multi30k-lm.sh.
tokenize_all() {
    multi30k_tokenize $src $tgt
    # Untokenized references, for detokenized scoring.
    local lang
    for lang in $src $tgt; do
        dp tokenize --lang "$lang" --no-tokenize --out "$TEXT/test.raw.$lang" "$(raw_path "test_2016_flickr.$lang.gz")"
    done
}

fetch_step "raw=${RAW_DIR:-download}" multi30k_fetch_and_verify $src $tgt
step tokenize "lowercase" tokenize_all
step learn-bpe "merges=$BPE_MERGES" learn_bpe $src $tgt
step apply-bpe "" apply_bpe $src $tgt
step binarize "" binarize $src $tgt
raw_args=()
for f in "${RAW_FILES[@]}"; do raw_args+=(--raw-file "$(raw_path "$f")"); done
publish multi30k.de-en $src $tgt multi30k "${raw_args[@]}" \
    --param "pipeline=sacremoses tokenize -l LANG (escape), lowercase, joint BPE, fairseq-preprocess --joined-dictionary" \
    --param "source=${RAW_DIR:-$MULTI30K_URL}"
