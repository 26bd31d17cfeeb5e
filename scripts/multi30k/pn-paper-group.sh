#!/usr/bin/env bash
# multi30k, row pn-paper-group: hyper-parameters in configs/multi30k/{common,pn-paper-group}.conf.
exec "$(dirname "$0")/../run_row.sh" multi30k pn-paper-group "$@"
