#!/usr/bin/env bash
# multi30k, row dyt: hyper-parameters in configs/multi30k/{common,dyt}.conf.
exec "$(dirname "$0")/../run_row.sh" multi30k dyt "$@"
