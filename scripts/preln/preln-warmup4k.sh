#!/usr/bin/env bash
# Pre-LN paper (IWSLT14), row preln-warmup4k: hyper-parameters in configs/preln/{common,preln-warmup4k}.conf.
exec "$(dirname "$0")/../run_row.sh" preln preln-warmup4k "$@"
