#!/usr/bin/env bash
# wmt14, row postln: hyper-parameters in configs/wmt14/{common,postln}.conf.
exec "$(dirname "$0")/../run_row.sh" wmt14 postln "$@"
