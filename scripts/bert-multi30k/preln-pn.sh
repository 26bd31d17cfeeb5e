#!/usr/bin/env bash
# BERT at Multi30k scale, row preln-pn: hyper-parameters in configs/bert-multi30k/{common,preln-pn}.conf.
exec "$(dirname "$0")/../run_mlm_row.sh" bert-multi30k preln-pn "$@"
