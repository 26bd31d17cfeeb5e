#!/usr/bin/env bash
# iwslt14, row dyt: hyper-parameters in configs/iwslt14/{common,dyt}.conf.
exec "$(dirname "$0")/../run_row.sh" iwslt14 dyt "$@"
