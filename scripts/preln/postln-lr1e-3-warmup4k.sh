#!/usr/bin/env bash
# Pre-LN paper (IWSLT14), row postln-lr1e-3-warmup4k: hyper-parameters in configs/preln/{common,postln-lr1e-3-warmup4k}.conf.
exec "$(dirname "$0")/../run_row.sh" preln postln-lr1e-3-warmup4k "$@"
