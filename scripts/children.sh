# Background tools a script waits for and stops on a signal (sourced by scripts/run_row.sh).
#
# Tools run in the background and are waited for: bash runs a trap only once a foreground
# command has returned, so a SIGTERM during decoding would otherwise wait for the whole decoding.
# Every background command of a script ignores SIGINT, so the tools stop only through
# stop_children.
children=()
starting=""

descendants() { local c; echo "$1"; for c in $(pgrep -P "$1" 2>/dev/null); do descendants "$c"; done; }

# Start "$@" in the background and record it in children. A trap runs between two commands, so
# a handler may run after the fork and before the record: stop_children then finds the tool by
# $!, which differs from the $! saved in starting.
spawn() {
  starting=${!:-none}
  "$@" &
  children+=($!)
  starting=""
}

# Run "$@" (with the caller's redirections) as a background child and wait for its status.
fg_child() {
  local status=0
  spawn "$@"
  wait "$!" || status=$?
  children=()
  return "$status"
}

# Stop every recorded tool and its descendants, for a signal handler. TERM again every half
# second while one lives, KILL after 30 s: a TERM that lands between a tool's fork and its exec
# is lost (the forked shell still runs the script's handler), and the tool would go on working.
stop_children() {
  if [[ -n $starting && $! != "$starting" && " ${children[*]} " != *" $! "* ]]; then children+=($!); fi
  local pids=() pid tries=0 sig
  while :; do
    pids=()
    for pid in "${children[@]}"; do kill -0 "$pid" 2>/dev/null && pids+=($(descendants "$pid")); done
    (( ${#pids[@]} > 0 )) || break
    sig=TERM; (( tries++ < 60 )) || sig=KILL
    kill -"$sig" "${pids[@]}" 2>/dev/null || true
    sleep 0.5
  done
  # only the tools themselves: a tee behind a redirection the handler still holds would never end
  (( ${#children[@]} == 0 )) || wait "${children[@]}" 2>/dev/null || true
}
