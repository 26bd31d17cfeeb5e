#!/usr/bin/env bash
# wmt14, row pn: hyper-parameters in configs/wmt14/{common,pn}.conf.
exec "$(dirname "$0")/../run_row.sh" wmt14 pn "$@"
