#!/usr/bin/env bash
# WikiText-103 language model, row pn-nogroup: hyper-parameters in configs/wikitext103/{common,pn-nogroup}.conf.
exec "$(dirname "$0")/../run_lm_row.sh" wikitext103 pn-nogroup "$@"
