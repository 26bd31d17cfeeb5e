#!/usr/bin/env bash
# iwslt14, row pn: hyper-parameters in configs/iwslt14/{common,pn}.conf.
exec "$(dirname "$0")/../run_row.sh" iwslt14 pn "$@"
