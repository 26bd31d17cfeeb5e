#!/usr/bin/env bash
# iwslt14, row pnv: hyper-parameters in configs/iwslt14/{common,pnv}.conf.
exec "$(dirname "$0")/../run_row.sh" iwslt14 pnv "$@"
