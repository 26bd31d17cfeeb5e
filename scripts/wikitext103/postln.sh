#!/usr/bin/env bash
# WikiText-103 language model, row postln: hyper-parameters in configs/wikitext103/{common,postln}.conf.
exec "$(dirname "$0")/../run_lm_row.sh" wikitext103 postln "$@"
