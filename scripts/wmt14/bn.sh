#!/usr/bin/env bash
# wmt14, row bn: hyper-parameters in configs/wmt14/{common,bn}.conf.
exec "$(dirname "$0")/../run_row.sh" wmt14 bn "$@"
