#!/usr/bin/env bash
# WikiText-103 language model, row pnv: hyper-parameters in configs/wikitext103/{common,pnv}.conf.
exec "$(dirname "$0")/../run_lm_row.sh" wikitext103 pnv "$@"
