#!/usr/bin/env bash
# Pre-LN paper (IWSLT14), row postln-warmup4k: hyper-parameters in configs/preln/{common,postln-warmup4k}.conf.
exec "$(dirname "$0")/../run_row.sh" preln postln-warmup4k "$@"
