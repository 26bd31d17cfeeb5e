#!/usr/bin/env bash
# WikiText-103 language model, row preln: hyper-parameters in configs/wikitext103/{common,preln}.conf.
exec "$(dirname "$0")/../run_lm_row.sh" wikitext103 preln "$@"
