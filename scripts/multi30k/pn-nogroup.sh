#!/usr/bin/env bash
# multi30k, row pn-nogroup: hyper-parameters in configs/multi30k/{common,pn-nogroup}.conf.
exec "$(dirname "$0")/../run_row.sh" multi30k pn-nogroup "$@"
