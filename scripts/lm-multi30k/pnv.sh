#!/usr/bin/env bash
# Multi30k language model, row pnv: hyper-parameters in configs/lm-multi30k/{common,pnv}.conf.
exec "$(dirname "$0")/../run_lm_row.sh" lm-multi30k pnv "$@"
