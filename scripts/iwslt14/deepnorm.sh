#!/usr/bin/env bash
# iwslt14, row deepnorm: hyper-parameters in configs/iwslt14/{common,deepnorm}.conf.
exec "$(dirname "$0")/../run_row.sh" iwslt14 deepnorm "$@"
