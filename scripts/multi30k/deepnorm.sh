#!/usr/bin/env bash
# multi30k, row deepnorm: hyper-parameters in configs/multi30k/{common,deepnorm}.conf.
exec "$(dirname "$0")/../run_row.sh" multi30k deepnorm "$@"
