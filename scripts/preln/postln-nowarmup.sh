#!/usr/bin/env bash
# Pre-LN paper (IWSLT14), row postln-nowarmup: hyper-parameters in configs/preln/{common,postln-nowarmup}.conf.
exec "$(dirname "$0")/../run_row.sh" preln postln-nowarmup "$@"
