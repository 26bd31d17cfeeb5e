#!/usr/bin/env bash
# multi30k to convergence (issue 36), row pn-nogroup: configs/multi30k/pn-nogroup.conf's model, configs/multi30k-converged/common.conf's schedule.
exec "$(dirname "$0")/../run_row.sh" multi30k-converged pn-nogroup "$@"
