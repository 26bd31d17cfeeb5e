#!/usr/bin/env bash
# wmt14, row pnv: hyper-parameters in configs/wmt14/{common,pnv}.conf.
exec "$(dirname "$0")/../run_row.sh" wmt14 pnv "$@"
