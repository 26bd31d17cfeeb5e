#!/usr/bin/env bash
# Pre-LN paper at Multi30k scale, row postln-lr1e-3-nowarmup: hyper-parameters in configs/preln/postln-lr1e-3-nowarmup.conf, scaled by configs/multi30k-preln/common.conf.
exec "$(dirname "$0")/../run_row.sh" multi30k-preln postln-lr1e-3-nowarmup "$@"
