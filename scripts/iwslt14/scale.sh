#!/usr/bin/env bash
# iwslt14, row scale: hyper-parameters in configs/iwslt14/{common,scale}.conf.
exec "$(dirname "$0")/../run_row.sh" iwslt14 scale "$@"
