#!/usr/bin/env bash
# The English side of Multi30k task 1 as a word-level language-modeling corpus, for the CPU-scale
# LM rows (train 29,000 / val 1,014 / test_2016_flickr 1,000 captions, ~0.38M words): the raw
# files, tokenized and lowercased exactly as prepare-multi30k.sh does it (lib.sh's multi30k_*
# functions, shared), binarized with fairseq-preprocess --only-source. One caption a line, so
# fairseq's language_modeling task adds one </s> per caption.
#
# Word level, no BPE. The MT prep needs BPE for an open vocabulary shared by two languages; an
# English LM here does not: its training side has 10,210 word types, the size of PTB's closed
# vocabulary, and a per-word perplexity is the unit the PowerNorm paper's Table 2 reports (PTB
# and WikiText-103 are word-level). BPE would make it a per-subword perplexity, comparable with
# neither. As PTB does, rare words become <unk>: the dictionary keeps the training words seen at
# least MIN_COUNT (2) times (5,918), so the 1.1% of training tokens that are singletons teach
# the model <unk>, which then stands for the valid/test words it never saw (2.1% / 1.8% of their
# tokens). With every training word kept (MIN_COUNT=1) <unk> would never be a training target
# and the 1.1-1.3% unseen valid/test words would get the probability of an untrained output row,
# noise in every row's perplexity.
#
#   RAW_DIR=../shared/data/multi30k bash data-prep/prepare-multi30k-lm.sh   # offline, ~15 s
#   bash data-prep/prepare-multi30k-lm.sh                    # downloads the 3 English files
#
# Environment: RAW_DIR, DEST (default data-bin/multi30k-lm.en), WORK_DIR, WORKERS, MIN_COUNT (2),
# CHECK_SIZES (1), MIRROR, KEEP_WORK, PYTHON; see data-prep/README.md.
set -euo pipefail
NAME=multi30k-lm
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MIN_COUNT="${MIN_COUNT:-2}"
[[ $MIN_COUNT =~ ^[1-9][0-9]*$ ]] || die "MIN_COUNT=$MIN_COUNT is not a positive integer"
lang=en
mapfile -t RAW_FILES < <(multi30k_raw_files $lang)

setup_dirs multi30k-lm.$lang
TEXT="$WORK_DIR/text"

fetch_step "raw=${RAW_DIR:-download}" multi30k_fetch_and_verify $lang
step tokenize "lowercase" multi30k_tokenize $lang
step binarize "min_count=$MIN_COUNT" binarize_lm .tok.$lang "$MIN_COUNT"
raw_args=()
for f in "${RAW_FILES[@]}"; do raw_args+=(--raw-file "$(raw_path "$f")"); done
publish_lm multi30k-lm.$lang .tok.$lang "$MIN_COUNT" multi30k-lm "${raw_args[@]}" \
    --param "pipeline=sacremoses tokenize -l en (escape), lowercase (prepare-multi30k.sh's), word level, fairseq-preprocess --only-source --thresholdsrc $MIN_COUNT" \
    --param "min_count=$MIN_COUNT" \
    --param "source=${RAW_DIR:-$MULTI30K_URL}"
