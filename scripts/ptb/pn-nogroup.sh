#!/usr/bin/env bash
# PTB language model, row pn-nogroup: hyper-parameters in configs/ptb/{common,pn-nogroup}.conf.
exec "$(dirname "$0")/../run_lm_row.sh" ptb pn-nogroup "$@"
