#!/usr/bin/env bash
# Pre-LN paper, Figure 4 (c, d) (WMT14 En-De), row postln-lr1.5e-3-warmup4k: hyper-parameters in configs/wmt14-preln/{common,postln-lr1.5e-3-warmup4k}.conf.
exec "$(dirname "$0")/../run_row.sh" wmt14-preln postln-lr1.5e-3-warmup4k "$@"
