#!/usr/bin/env bash
# PTB language model, row pn: hyper-parameters in configs/ptb/{common,pn}.conf.
exec "$(dirname "$0")/../run_lm_row.sh" ptb pn "$@"
