#!/usr/bin/env bash
# WikiText-103 language model, row bn: hyper-parameters in configs/wikitext103/{common,bn}.conf.
exec "$(dirname "$0")/../run_lm_row.sh" wikitext103 bn "$@"
