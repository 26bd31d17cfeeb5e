#!/usr/bin/env bash
# WikiText-103 (Merity et al. 2016; train 1,801,350 lines / 103,227,021 tokens with one </s> a
# line; valid 3,760 / test 4,358 lines), the word-level files wiki.{train,valid,test}.tokens of
# wikitext-103-v1.zip, binarized as they are with fairseq-preprocess --only-source (as fairseq's
# examples/language_model/prepare-wikitext-103.sh). prepare-wikitext2.sh runs this script for
# WikiText-2 (wikitext-2-v1.zip).
#
# Source: the dataset author's own mirror, https://wikitext.smerity.com/. The S3 links of
# fairseq's and Transformer-XL's scripts (s3.amazonaws.com/research.metamind.io/wikitext/...)
# answer 403 since 2024. See data-prep/README.md for why the mirror's archive is the original.
#
#   bash data-prep/prepare-wikitext103.sh                   # downloads ~190 MB
#   RAW_DIR=/path/with/wikitext-103-v1.zip bash data-prep/prepare-wikitext103.sh
#   RAW_DIR=/path/to/wikitext-103 bash data-prep/prepare-wikitext103.sh   # the extracted files
#
# Environment: RAW_DIR, DEST (default data-bin/wikitext-103), WORK_DIR, WORKERS, CHECK_SIZES (1),
# MIRROR, KEEP_WORK, PYTHON; see data-prep/README.md.
set -euo pipefail
# Run directly: WikiText-103. Sourced by prepare-wikitext2.sh, which sets WIKITEXT=2 first.
[[ ${BASH_SOURCE[0]} == "$0" ]] && WIKITEXT=103
NAME=wikitext$WIKITEXT
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DATASET=wikitext-$WIKITEXT
ARCHIVE=$DATASET-v1.zip
URL="https://wikitext.smerity.com/$ARCHIVE"
SPLITS=(train valid test)

setup_dirs $DATASET
TEXT="$WORK_DIR/text"

# RAW_DIR holds either the archive or the three files it holds (under $DATASET/ in the archive).
SOURCE=zip
if [[ -n ${RAW_DIR:-} && -f $RAW_DIR/wiki.train.tokens && -f $RAW_DIR/wiki.valid.tokens && -f $RAW_DIR/wiki.test.tokens ]]; then
    SOURCE=tokens
fi

fetch_raw() {
    if [[ $SOURCE == tokens ]]; then
        log "RAW_DIR has the extracted wiki.{train,valid,test}.tokens: using them (not $ARCHIVE)"
    elif [[ -n ${RAW_DIR:-} && ! -f $RAW_DIR/$ARCHIVE ]]; then
        die "RAW_DIR=$RAW_DIR has neither $ARCHIVE nor the wiki.{train,valid,test}.tokens it holds; put the archive from $URL (or the three files) there, or unset RAW_DIR to download it"
    else
        fetch "$ARCHIVE" "$URL"
    fi
}

copy_text() {
    local split
    for split in "${SPLITS[@]}"; do
        if [[ $SOURCE == tokens ]]; then
            dp lm-text "$RAW_DIR/wiki.$split.tokens" "$TEXT/$split.tok" \
                || damaged_raw "wiki.$split.tokens" "$URL (in $DATASET/)"
        else
            dp lm-text --member "$DATASET/wiki.$split.tokens" "$(raw_path "$ARCHIVE")" "$TEXT/$split.tok" \
                || damaged_raw "$ARCHIVE" "$URL"
        fi
    done
}

fetch_step "raw=${RAW_DIR:-download} from=$SOURCE" fetch_raw
step text "" copy_text
step binarize "" binarize_lm .tok 1
raw_args=()
if [[ $SOURCE == tokens ]]; then
    for split in "${SPLITS[@]}"; do raw_args+=(--raw-file "$RAW_DIR/wiki.$split.tokens"); done
else
    raw_args=(--raw-file "$(raw_path "$ARCHIVE")")
fi
publish_lm $DATASET .tok 1 $DATASET "${raw_args[@]}" \
    --param "pipeline=wiki.{train,valid,test}.tokens unchanged, fairseq-preprocess --only-source" \
    --param "source=${RAW_DIR:-$URL}"
