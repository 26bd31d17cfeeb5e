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

BASE_URL="https://github.com/multi30k/dataset/raw/master/data/task1/raw"
BPE_MERGES="${BPE_MERGES:-10000}"
src=de
tgt=en
# Raw split name -> fairseq split name.
declare -A SPLIT_OF=([train]=train [val]=valid [test_2016_flickr]=test)
RAW_FILES=()
for raw in train val test_2016_flickr; do
    for lang in $src $tgt; do RAW_FILES+=("$raw.$lang.gz"); done
done

setup_dirs multi30k.de-en
TEXT="$WORK_DIR/text"

fetch_and_verify() {
    local f
    for f in "${RAW_FILES[@]}"; do fetch "$f" "$BASE_URL/$f"; done
    local dir
    dir="$(dirname "$(raw_path "${RAW_FILES[0]}")")"
    if ! dp verify --sums "$PREP_DIR/checksums/multi30k.sha256" --dir "$dir" "${RAW_FILES[@]}"; then
        if [[ -n ${RAW_DIR:-} ]]; then
            die "the Multi30k raw files in RAW_DIR=$RAW_DIR do not match data-prep/checksums/multi30k.sha256"
        fi
        rm -f "$WORK_DIR/orig/"*.gz
        die "the downloaded Multi30k files do not match data-prep/checksums/multi30k.sha256; they were deleted, rerun to download them again"
    fi
}

tokenize_all() {
    local raw lang
    for raw in "${!SPLIT_OF[@]}"; do
        for lang in $src $tgt; do
            dp tokenize --lang "$lang" --lowercase --workers "$WORKERS" \
                --out "$TEXT/${SPLIT_OF[$raw]}.tok.$lang" "$(raw_path "$raw.$lang.gz")"
        done
    done
    # Untokenized references, for detokenized scoring.
    for lang in $src $tgt; do
        dp tokenize --lang "$lang" --no-tokenize --out "$TEXT/test.raw.$lang" "$(raw_path "test_2016_flickr.$lang.gz")"
    done
}

fetch_step "raw=${RAW_DIR:-download}" fetch_and_verify
step tokenize "lowercase" tokenize_all
step learn-bpe "merges=$BPE_MERGES" learn_bpe $src $tgt
step apply-bpe "" apply_bpe $src $tgt
step binarize "" binarize $src $tgt
raw_args=()
for f in "${RAW_FILES[@]}"; do raw_args+=(--raw-file "$(raw_path "$f")"); done
publish multi30k.de-en $src $tgt multi30k "${raw_args[@]}" \
    --param "pipeline=sacremoses tokenize -l LANG (escape), lowercase, joint BPE, fairseq-preprocess --joined-dictionary" \
    --param "source=${RAW_DIR:-$BASE_URL}"
