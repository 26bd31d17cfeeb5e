#!/usr/bin/env bash
# Multi30k language model, row postln: hyper-parameters in configs/lm-multi30k/{common,postln}.conf.
exec "$(dirname "$0")/../run_lm_row.sh" lm-multi30k postln "$@"
