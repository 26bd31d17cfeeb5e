#!/usr/bin/env bash
# Pre-LN paper, Figure 4 (c, d) (WMT14 En-De), row postln-lr7e-4-warmup4k: hyper-parameters in configs/wmt14-preln/{common,postln-lr7e-4-warmup4k}.conf.
exec "$(dirname "$0")/../run_row.sh" wmt14-preln postln-lr7e-4-warmup4k "$@"
