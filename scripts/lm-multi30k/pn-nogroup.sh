#!/usr/bin/env bash
# Multi30k language model, row pn-nogroup: hyper-parameters in configs/lm-multi30k/{common,pn-nogroup}.conf.
exec "$(dirname "$0")/../run_lm_row.sh" lm-multi30k pn-nogroup "$@"
