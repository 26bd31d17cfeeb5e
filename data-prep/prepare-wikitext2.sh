#!/usr/bin/env bash
# WikiText-2 (train 36,718 lines / 2,088,628 tokens with one </s> a line; valid and test are
# WikiText-103's): wiki.{train,valid,test}.tokens of wikitext-2-v1.zip from the author's mirror
# https://wikitext.smerity.com/, binarized as they are with fairseq-preprocess --only-source.
# The steps are prepare-wikitext103.sh's.
#
#   bash data-prep/prepare-wikitext2.sh                     # downloads ~4.5 MB
#   RAW_DIR=/path/with/wikitext-2-v1.zip bash data-prep/prepare-wikitext2.sh
#   RAW_DIR=/path/to/wikitext-2 bash data-prep/prepare-wikitext2.sh       # the extracted files
#
# Environment: RAW_DIR, DEST (default data-bin/wikitext-2), WORK_DIR, WORKERS, CHECK_SIZES (1),
# MIRROR, KEEP_WORK, PYTHON; see data-prep/README.md.
set -euo pipefail
WIKITEXT=2
source "$(dirname "${BASH_SOURCE[0]}")/prepare-wikitext103.sh"
