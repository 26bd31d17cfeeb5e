#!/usr/bin/env bash
# iwslt14, row preln: hyper-parameters in configs/iwslt14/{common,preln}.conf.
exec "$(dirname "$0")/../run_row.sh" iwslt14 preln "$@"
