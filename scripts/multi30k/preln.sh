#!/usr/bin/env bash
# multi30k, row preln: hyper-parameters in configs/multi30k/{common,preln}.conf.
exec "$(dirname "$0")/../run_row.sh" multi30k preln "$@"
