#!/usr/bin/env bash
# Pre-LN paper (IWSLT14), row postln-sgd-lr5e-3-nowarmup: hyper-parameters in configs/preln/{common,postln-sgd-lr5e-3-nowarmup}.conf.
exec "$(dirname "$0")/../run_row.sh" preln postln-sgd-lr5e-3-nowarmup "$@"
