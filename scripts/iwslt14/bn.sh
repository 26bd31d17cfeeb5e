#!/usr/bin/env bash
# iwslt14, row bn: hyper-parameters in configs/iwslt14/{common,bn}.conf.
exec "$(dirname "$0")/../run_row.sh" iwslt14 bn "$@"
