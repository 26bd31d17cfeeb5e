#!/usr/bin/env bash
# PTB language model, row bn: hyper-parameters in configs/ptb/{common,bn}.conf.
exec "$(dirname "$0")/../run_lm_row.sh" ptb bn "$@"
