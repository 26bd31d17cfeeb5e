#!/usr/bin/env bash
# multi30k, row pn-paper: hyper-parameters in configs/multi30k/{common,pn-paper}.conf.
exec "$(dirname "$0")/../run_row.sh" multi30k pn-paper "$@"
