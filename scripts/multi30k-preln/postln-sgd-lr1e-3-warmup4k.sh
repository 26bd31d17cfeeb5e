#!/usr/bin/env bash
# Pre-LN paper at Multi30k scale, row postln-sgd-lr1e-3-warmup4k: hyper-parameters in configs/preln/postln-sgd-lr1e-3-warmup4k.conf, scaled by configs/multi30k-preln/common.conf.
exec "$(dirname "$0")/../run_row.sh" multi30k-preln postln-sgd-lr1e-3-warmup4k "$@"
