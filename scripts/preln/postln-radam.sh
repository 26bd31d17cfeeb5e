#!/usr/bin/env bash
# Pre-LN paper (IWSLT14), row postln-radam: hyper-parameters in configs/preln/{common,postln-radam}.conf.
exec "$(dirname "$0")/../run_row.sh" preln postln-radam "$@"
