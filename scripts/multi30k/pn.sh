#!/usr/bin/env bash
# multi30k, row pn: hyper-parameters in configs/multi30k/{common,pn}.conf.
exec "$(dirname "$0")/../run_row.sh" multi30k pn "$@"
