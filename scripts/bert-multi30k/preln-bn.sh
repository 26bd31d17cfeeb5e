#!/usr/bin/env bash
# BERT at Multi30k scale, row preln-bn: hyper-parameters in configs/bert-multi30k/{common,preln-bn}.conf.
exec "$(dirname "$0")/../run_mlm_row.sh" bert-multi30k preln-bn "$@"
