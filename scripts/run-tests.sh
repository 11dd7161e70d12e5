#!/usr/bin/env bash
# Every test: the main run (test files in parallel), then the quiet phase (tests/quiet/, one file at
# a time on an otherwise idle machine: their figures are round trips against millisecond bounds).
# Both phases always run; the exit status is non-zero when either failed.
set -uo pipefail
cd "$(dirname "$0")/.."
npx ava
main=$?
# Daemons a main-phase test left running would load the machine the quiet phase measures on: name
# them (a test that leaks a daemon is a defect to fix) and stop them before the quiet phase.
left=$(pgrep -af 'metro-agent|metro-witness|qemu-io|qemu-img|iscsi-test-cu' | grep -v pgrep || true)
if [ -n "$left" ]; then
  echo
  echo "processes left running by the main phase, stopped before the quiet phase:"
  echo "$left"
  pkill -KILL -f 'metro-agent|metro-witness|qemu-io|qemu-img|iscsi-test-cu' || true
fi
# Whatever the main phase left dirty in the page cache is written back first, not while the quiet
# phase measures round trips.
sync
echo
echo "quiet phase: tests/quiet/ one at a time"
npx ava --config ava.quiet.config.js
quiet=$?
echo
echo "test phases: main $([ $main -eq 0 ] && echo passed || echo FAILED), quiet $([ $quiet -eq 0 ] && echo passed || echo FAILED)"
[ $main -eq 0 ] && [ $quiet -eq 0 ]
