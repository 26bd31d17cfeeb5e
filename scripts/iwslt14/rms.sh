#!/usr/bin/env bash
# iwslt14, row rms: hyper-parameters in configs/iwslt14/{common,rms}.conf.
exec "$(dirname "$0")/../run_row.sh" iwslt14 rms "$@"
