#!/usr/bin/env bash
# iwslt14, row pn-paper: hyper-parameters in configs/iwslt14/{common,pn-paper}.conf.
exec "$(dirname "$0")/../run_row.sh" iwslt14 pn-paper "$@"
