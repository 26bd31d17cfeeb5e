#!/usr/bin/env bash
# WikiText-103 language model, row pn: hyper-parameters in configs/wikitext103/{common,pn}.conf.
exec "$(dirname "$0")/../run_lm_row.sh" wikitext103 pn "$@"
