#!/usr/bin/env bash
# Multi30k language model, row rms: hyper-parameters in configs/lm-multi30k/{common,rms}.conf.
exec "$(dirname "$0")/../run_lm_row.sh" lm-multi30k rms "$@"
