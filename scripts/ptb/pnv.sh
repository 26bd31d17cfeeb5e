#!/usr/bin/env bash
# PTB language model, row pnv: hyper-parameters in configs/ptb/{common,pnv}.conf.
exec "$(dirname "$0")/../run_lm_row.sh" ptb pnv "$@"
