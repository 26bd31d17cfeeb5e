#!/usr/bin/env bash
# Pre-LN paper (IWSLT14), row postln-fixed1e-4: hyper-parameters in configs/preln/{common,postln-fixed1e-4}.conf.
exec "$(dirname "$0")/../run_row.sh" preln postln-fixed1e-4 "$@"
