#!/usr/bin/env bash
# IWSLT14 De-En as fairseq's examples/translation/prepare-iwslt14.sh, without perl or git:
# tag stripping, Moses tokenization (sacremoses), clean-corpus-n -ratio 1.5 1..175 on the
# training data, lowercasing, valid = every 23rd training pair, test = TED dev2010 + TEDX
# dev2012 + TED tst2010..2012, joint BPE (10,000 merges), fairseq-preprocess --joined-dictionary.
#
#   bash data-prep/prepare-iwslt14.sh                 # downloads de-en.tgz
#   RAW_DIR=/path/with/de-en.tgz bash data-prep/prepare-iwslt14.sh
#
# Environment: RAW_DIR, DEST (default data-bin/iwslt14.tokenized.de-en), WORK_DIR, WORKERS,
# BPE_MERGES (10000), CHECK_SIZES (1), MIRROR, KEEP_WORK, PYTHON; see data-prep/README.md.
set -euo pipefail
NAME=iwslt14
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

URL="http://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz"
ARCHIVE=de-en.tgz
BPE_MERGES="${BPE_MERGES:-10000}"
src=de
tgt=en
lang=de-en
# In the order of the recipe's `cat` into test.$l.
DEVTEST=(IWSLT14.TED.dev2010 IWSLT14.TEDX.dev2012 IWSLT14.TED.tst2010 IWSLT14.TED.tst2011 IWSLT14.TED.tst2012)

setup_dirs iwslt14.tokenized.de-en
TEXT="$WORK_DIR/text"
TMP="$WORK_DIR/tmp"
ORIG="$WORK_DIR/orig/extracted/$lang"

unpack() {
    local members=() l s
    for l in $src $tgt; do
        members+=("$lang/train.tags.$lang.$l")
        for s in "${DEVTEST[@]}"; do members+=("$lang/$s.$lang.$l.xml"); done
    done
    extract "$(raw_path $ARCHIVE)" "${members[@]}"
}

prepare_train() {
    local l
    for l in $src $tgt; do
        dp iwslt-train "$ORIG/train.tags.$lang.$l" "$TMP/train.tags.$lang.$l"
        dp tokenize --lang $l --workers "$WORKERS" --out "$TMP/train.tags.$lang.tok.$l" "$TMP/train.tags.$lang.$l"
    done
    dp clean --ratio 1.5 "$TMP/train.tags.$lang.tok" $src $tgt "$TMP/train.tags.$lang.clean" 1 175
    for l in $src $tgt; do
        dp tokenize --lang $l --no-tokenize --lowercase --out "$TMP/train.tags.$lang.lc.$l" "$TMP/train.tags.$lang.clean.$l"
        dp split-every 23 "$TMP/train.tags.$lang.lc.$l" "$TEXT/train.tok.$l" "$TEXT/valid.tok.$l"
    done
}

prepare_test() {
    local l s segs raws
    for l in $src $tgt; do
        segs=()
        raws=()
        for s in "${DEVTEST[@]}"; do
            dp segs --straight-apostrophe "$ORIG/$s.$lang.$l.xml" "$TMP/$s.$lang.$l"
            dp segs "$ORIG/$s.$lang.$l.xml" "$TMP/$s.$lang.raw.$l"
            segs+=("$TMP/$s.$lang.$l")
            raws+=("$TMP/$s.$lang.raw.$l")
        done
        dp tokenize --lang $l --lowercase --workers "$WORKERS" --out "$TEXT/test.tok.$l" "${segs[@]}"
        dp tokenize --lang $l --no-tokenize --out "$TEXT/test.raw.$l" "${raws[@]}"
    done
}

fetch_step "raw=${RAW_DIR:-download} url=$URL" fetch $ARCHIVE "$URL"
step unpack "" unpack
step train "" prepare_train
step test "" prepare_test
step learn-bpe "merges=$BPE_MERGES" learn_bpe $src $tgt
step apply-bpe "" apply_bpe $src $tgt
step binarize "" binarize $src $tgt
publish iwslt14.tokenized.de-en $src $tgt iwslt14 --raw-file "$(raw_path $ARCHIVE)" \
    --param "pipeline=fairseq prepare-iwslt14.sh: tag stripping, sacremoses tokenize -l LANG, clean-corpus-n -ratio 1.5 1 175 (train), lowercase, valid = every 23rd train pair, joint BPE, fairseq-preprocess --joined-dictionary" \
    --param "source=${RAW_DIR:-$URL}"
