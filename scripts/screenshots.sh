#!/usr/bin/env bash
# Takes PNG screenshots of the TUI from a real run: boots a guest, opens `sparc tui` in
# tmux, drives it with keys, captures each screen with colours, renders it to PNG.
set -euo pipefail
cd "$(dirname "$0")/.."
sparc=$PWD/.build/debug/sparc
out=$PWD/screenshots
work=$(mktemp -d /tmp/sparc-shots.XXXXXX)
export SPARC_RUNTIME_DIR=$work/rt SPARC_STATE_DIR=$work/state
session=sparc-shots-$$
cleanup() { tmux kill-session -t "$session" 2>/dev/null || true; "$sparc" vm stop --name shots >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/bundles"
"$sparc" vm start --name shots >/dev/null
"$sparc" exec --name shots --detach -- sh -c 'S=hunter2-correct-horse; while :; do sleep 1000; done' >/dev/null
"$sparc" terminal --name shots --send 'echo typed-in-a-pty\n'
"$sparc" checkpoint --name shots -o "$work/bundles/baseline.sparc" >/dev/null
tmux new-session -d -s "$session" -x 110 -y 28 "SPARC_RUNTIME_DIR=$SPARC_RUNTIME_DIR SPARC_STATE_DIR=$SPARC_STATE_DIR $sparc tui --name shots --bundles $work/bundles"
sleep 3
shot() { sleep "${2:-1}"; tmux capture-pane -e -N -p -t "$session" > "$work/$1.ans"; /usr/bin/python3 scripts/ansi2png.py "$work/$1.ans" "$out/$1.png"; echo "screenshots/$1.png"; }
tmux send-keys -t "$session" End Up Up Up ' ' t; shot processes
tmux send-keys -t "$session" F1; shot help
tmux send-keys -t "$session" Escape F4; shot terminals
tmux send-keys -t "$session" F2 F8; shot checkpoint-confirm
tmux send-keys -t "$session" y; shot checkpoint-done 4
tmux send-keys -t "$session" F6; shot bundles
tmux send-keys -t "$session" Enter; tmux send-keys -t "$session" -l hunter2-correct-horse; tmux send-keys -t "$session" Enter; shot search-hits 4
tmux send-keys -t "$session" Enter; shot hex-view
tmux send-keys -t "$session" Escape Escape Down F7; shot restore-wizard
tmux send-keys -t "$session" y; shot restore-done 6
tmux send-keys -t "$session" q
