#!/usr/bin/env bash
# multi30k, row postln: hyper-parameters in configs/multi30k/{common,postln}.conf.
exec "$(dirname "$0")/../run_row.sh" multi30k postln "$@"
