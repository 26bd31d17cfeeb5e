#!/usr/bin/env bash
# multi30k to convergence (issue 36), row bn: configs/multi30k/bn.conf's model, configs/multi30k-converged/common.conf's schedule.
exec "$(dirname "$0")/../run_row.sh" multi30k-converged bn "$@"
