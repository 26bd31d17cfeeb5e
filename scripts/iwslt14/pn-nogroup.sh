#!/usr/bin/env bash
# iwslt14, row pn-nogroup: hyper-parameters in configs/iwslt14/{common,pn-nogroup}.conf.
exec "$(dirname "$0")/../run_row.sh" iwslt14 pn-nogroup "$@"
