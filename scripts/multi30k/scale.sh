#!/usr/bin/env bash
# multi30k, row scale: hyper-parameters in configs/multi30k/{common,scale}.conf.
exec "$(dirname "$0")/../run_row.sh" multi30k scale "$@"
