#!/usr/bin/env bash
# BERT at Multi30k scale, row preln-pnv: hyper-parameters in configs/bert-multi30k/{common,preln-pnv}.conf.
exec "$(dirname "$0")/../run_mlm_row.sh" bert-multi30k preln-pnv "$@"
