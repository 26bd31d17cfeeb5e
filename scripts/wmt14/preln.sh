#!/usr/bin/env bash
# wmt14, row preln: hyper-parameters in configs/wmt14/{common,preln}.conf.
exec "$(dirname "$0")/../run_row.sh" wmt14 preln "$@"
