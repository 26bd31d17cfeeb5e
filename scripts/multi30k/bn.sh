#!/usr/bin/env bash
# multi30k, row bn: hyper-parameters in configs/multi30k/{common,bn}.conf.
exec "$(dirname "$0")/../run_row.sh" multi30k bn "$@"
