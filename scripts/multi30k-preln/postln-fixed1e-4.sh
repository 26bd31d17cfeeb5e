#!/usr/bin/env bash
# Pre-LN paper at Multi30k scale, row postln-fixed1e-4: hyper-parameters in configs/preln/postln-fixed1e-4.conf, scaled by configs/multi30k-preln/common.conf.
exec "$(dirname "$0")/../run_row.sh" multi30k-preln postln-fixed1e-4 "$@"
