#!/usr/bin/env bash
# BERT at Multi30k scale, row postln-lr3e-4: hyper-parameters in configs/bert-multi30k/{common,postln-lr3e-4}.conf.
exec "$(dirname "$0")/../run_mlm_row.sh" bert-multi30k postln-lr3e-4 "$@"
