#!/usr/bin/env bash
# multi30k, row rms: hyper-parameters in configs/multi30k/{common,rms}.conf.
exec "$(dirname "$0")/../run_row.sh" multi30k rms "$@"
