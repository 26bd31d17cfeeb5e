#!/usr/bin/env bash
# Pre-LN paper (IWSLT14), row preln-nowarmup: hyper-parameters in configs/preln/{common,preln-nowarmup}.conf.
exec "$(dirname "$0")/../run_row.sh" preln preln-nowarmup "$@"
