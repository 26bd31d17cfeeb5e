#!/usr/bin/env bash
# Pre-LN paper (IWSLT14), row preln-radam: hyper-parameters in configs/preln/{common,preln-radam}.conf.
exec "$(dirname "$0")/../run_row.sh" preln preln-radam "$@"
