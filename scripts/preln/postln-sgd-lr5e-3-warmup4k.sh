#!/usr/bin/env bash
# Pre-LN paper (IWSLT14), row postln-sgd-lr5e-3-warmup4k: hyper-parameters in configs/preln/{common,postln-sgd-lr5e-3-warmup4k}.conf.
exec "$(dirname "$0")/../run_row.sh" preln postln-sgd-lr5e-3-warmup4k "$@"
