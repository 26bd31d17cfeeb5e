#!/usr/bin/env bash
# PTB language model, row postln: hyper-parameters in configs/ptb/{common,postln}.conf.
exec "$(dirname "$0")/../run_lm_row.sh" ptb postln "$@"
