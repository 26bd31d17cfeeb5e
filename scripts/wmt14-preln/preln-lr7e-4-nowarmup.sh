#!/usr/bin/env bash
# Pre-LN paper, Figure 4 (c, d) (WMT14 En-De), row preln-lr7e-4-nowarmup: hyper-parameters in configs/wmt14-preln/{common,preln-lr7e-4-nowarmup}.conf.
exec "$(dirname "$0")/../run_row.sh" wmt14-preln preln-lr7e-4-nowarmup "$@"
