#!/usr/bin/env bash
# BERT at Multi30k scale, row postln-warmup: hyper-parameters in configs/bert-multi30k/{common,postln-warmup}.conf.
exec "$(dirname "$0")/../run_mlm_row.sh" bert-multi30k postln-warmup "$@"
