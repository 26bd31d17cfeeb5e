#!/usr/bin/env bash
# PTB language model, row preln: hyper-parameters in configs/ptb/{common,preln}.conf.
exec "$(dirname "$0")/../run_lm_row.sh" ptb preln "$@"
