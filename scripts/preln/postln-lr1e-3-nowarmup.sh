#!/usr/bin/env bash
# Pre-LN paper (IWSLT14), row postln-lr1e-3-nowarmup: hyper-parameters in configs/preln/{common,postln-lr1e-3-nowarmup}.conf.
exec "$(dirname "$0")/../run_row.sh" preln postln-lr1e-3-nowarmup "$@"
