#!/usr/bin/env bash
# Multi30k language model, row preln: hyper-parameters in configs/lm-multi30k/{common,preln}.conf.
exec "$(dirname "$0")/../run_lm_row.sh" lm-multi30k preln "$@"
