#!/usr/bin/env bash
# iwslt14, row postln: hyper-parameters in configs/iwslt14/{common,postln}.conf.
exec "$(dirname "$0")/../run_row.sh" iwslt14 postln "$@"
