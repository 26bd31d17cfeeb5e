#!/usr/bin/env bash
# Pre-LN paper (IWSLT14), row postln-warmup500: hyper-parameters in configs/preln/{common,postln-warmup500}.conf.
exec "$(dirname "$0")/../run_row.sh" preln postln-warmup500 "$@"
