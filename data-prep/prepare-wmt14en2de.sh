#!/usr/bin/env bash
# WMT14 En-De as the PowerNorm scripts prepared it (fairseq's prepare-wmt14en2de.sh, v0.6 era),
# without perl or git: Europarl v7 + CommonCrawl + News Commentary v12 for training, Moses
# normalize-punctuation + remove-non-printing-char + tokenization with aggressive hyphen
# splitting (-a), cased; training pairs cleaned to 1..80 tokens (clean-corpus-n's default
# ratio 9); newstest2013 valid, newstest2014 (full, 3,003 lines) test; joint BPE (32,764
# merges); fairseq-preprocess --joined-dictionary.
#
#   bash data-prep/prepare-wmt14en2de.sh              # downloads the five archives
#   RAW_DIR=/path/with/archives bash data-prep/prepare-wmt14en2de.sh
#
# Environment: RAW_DIR, DEST (default data-bin/wmt14_en_de), WORK_DIR, WORKERS,
# BPE_MERGES (32764), CHECK_SIZES (1), MIRROR, KEEP_WORK, PYTHON; see data-prep/README.md.
set -euo pipefail
NAME=wmt14
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

URLS=(
    "http://statmt.org/wmt13/training-parallel-europarl-v7.tgz"
    "http://statmt.org/wmt13/training-parallel-commoncrawl.tgz"
    "http://data.statmt.org/wmt17/translation-task/training-parallel-nc-v12.tgz"
    "http://data.statmt.org/wmt17/translation-task/dev.tgz"
    "http://statmt.org/wmt14/test-full.tgz"
)
FILES=(
    "training-parallel-europarl-v7.tgz"
    "training-parallel-commoncrawl.tgz"
    "training-parallel-nc-v12.tgz"
    "dev.tgz"
    "test-full.tgz"
)
CORPORA=(
    "training/europarl-v7.de-en"
    "commoncrawl.de-en"
    "training/news-commentary-v12.de-en"
)
DEV=dev/newstest2013
BPE_MERGES="${BPE_MERGES:-32764}"
src=en
tgt=de
lang=en-de

setup_dirs wmt14_en_de
TEXT="$WORK_DIR/text"
TMP="$WORK_DIR/tmp"
ORIG="$WORK_DIR/orig/extracted"

fetch_all() {
    local i
    for i in "${!FILES[@]}"; do fetch "${FILES[$i]}" "${URLS[$i]}"; done
}

unpack() {
    local i l
    for i in 0 1 2; do
        extract "$(raw_path "${FILES[$i]}")" "${CORPORA[$i]}.$src" "${CORPORA[$i]}.$tgt"
    done
    extract "$(raw_path dev.tgz)" "$DEV.$src" "$DEV.$tgt"
    extract "$(raw_path test-full.tgz)" test-full/newstest2014-deen-src.$src.sgm test-full/newstest2014-deen-ref.$tgt.sgm
}

# The test set's side: newstest2014-deen-src.en.sgm and newstest2014-deen-ref.de.sgm.
test_sgm() { if [[ $1 == "$src" ]]; then echo "$ORIG/test-full/newstest2014-deen-src.$1.sgm"; else echo "$ORIG/test-full/newstest2014-deen-ref.$1.sgm"; fi; }

prepare_train() {
    local f l inputs
    for f in "${CORPORA[@]}"; do
        local n_src n_tgt
        n_src=$(wc -l <"$ORIG/$f.$src")
        n_tgt=$(wc -l <"$ORIG/$f.$tgt")
        [[ $n_src == "$n_tgt" ]] || die "$ORIG/$f.$src has $n_src lines but $ORIG/$f.$tgt has $n_tgt: corrupted archive?"
    done
    for l in $src $tgt; do
        inputs=()
        for f in "${CORPORA[@]}"; do inputs+=("$ORIG/$f.$l"); done
        dp tokenize --lang $l --normalize-punct --remove-non-printing --aggressive --workers "$WORKERS" \
            --out "$TMP/train.tags.$lang.tok.$l" "${inputs[@]}"
    done
    # Default ratio (9) and 1..80 tokens, before BPE: the PowerNorm scripts' cleaning.
    dp clean "$TMP/train.tags.$lang.tok" $src $tgt "$TMP/train.clean" 1 80
    for l in $src $tgt; do mv "$TMP/train.clean.$l" "$TEXT/train.tok.$l"; done
}

prepare_valid() {
    local l
    for l in $src $tgt; do
        # Plain-text newstest2013, processed like the training data (not cleaned).
        dp tokenize --lang $l --normalize-punct --remove-non-printing --aggressive --workers "$WORKERS" \
            --out "$TEXT/valid.tok.$l" "$ORIG/$DEV.$l"
    done
}

prepare_test() {
    local l sgm
    for l in $src $tgt; do
        sgm="$(test_sgm $l)"
        # The recipe's test processing: <seg> text, ’ -> ', tokenizer -a (no normalization).
        dp segs --straight-apostrophe "$sgm" "$TMP/test.$l"
        dp tokenize --lang $l --aggressive --workers "$WORKERS" --out "$TEXT/test.tok.$l" "$TMP/test.$l"
        # Untokenized, as sacrebleu reads wmt14/full: the reference for detokenized BLEU.
        dp segs --raw "$sgm" "$TEXT/test.raw.$l"
    done
}

fetch_step "raw=${RAW_DIR:-download} urls=${URLS[*]}" fetch_all
step unpack "" unpack
step train "" prepare_train
step valid "" prepare_valid
step test "" prepare_test
step learn-bpe "merges=$BPE_MERGES" learn_bpe $src $tgt
step apply-bpe "" apply_bpe $src $tgt
step binarize "" binarize $src $tgt
raw_args=()
for f in "${FILES[@]}"; do raw_args+=(--raw-file "$(raw_path "$f")"); done
publish wmt14_en_de $src $tgt wmt14 "${raw_args[@]}" \
    --param "pipeline=normalize-punctuation + remove-non-printing-char + sacremoses tokenize -a -l LANG (train, valid), tokenize -a (test), clean-corpus-n 1 80 ratio 9 (train), cased, joint BPE, fairseq-preprocess --joined-dictionary" \
    --param "source=${RAW_DIR:-statmt.org}"
