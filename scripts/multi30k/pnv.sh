#!/usr/bin/env bash
# multi30k, row pnv: hyper-parameters in configs/multi30k/{common,pnv}.conf.
exec "$(dirname "$0")/../run_row.sh" multi30k pnv "$@"
