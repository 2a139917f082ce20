#!/usr/bin/env bash
# Trains a queue of runs one after another, each to the end or to the time budget, and can be
# started again at any time: a finished run is skipped, an unfinished one resumed (--resume),
# a missing one started. Used by `make train-release` and `make study-stage1`.
#
#   tools/train_queue.sh QUEUE_FILE
#
# QUEUE_FILE: one run per line, `RUN_DIR EXPERIMENT ARGS...` (ARGS as for `cxr-cascade train`,
# e.g. --data PATH --set seed=1 --unet RUN); blank lines and #-comments are skipped.
# Environment: CLI (default: cxr-cascade), PYTHON (default: python3), TRAIN_ARGS (added to every start and resume, e.g.
# "--time-budget 150m --save-every 10m"; the budget counts per run).
# Exit status: 0 when every run finished, 75 when one stopped at its budget (the queue stops
# there: later runs may need it, e.g. stage 2 needs the U-Net), else the failing run's status.
set -u
# Started with setsid, the queue is its own autogroup, and the scheduler weighs autogroups
# against each other before `nice` counts: give the whole group the lowest weight, so that the
# training really yields to interactive work (Linux autogroup; harmless where absent).
echo 19 > /proc/self/autogroup 2>/dev/null || true
queue=${1:?usage: tools/train_queue.sh QUEUE_FILE}
CLI=${CLI:-cxr-cascade}
PYTHON=${PYTHON:-python3}
while read -r run experiment args; do
  case "$run" in ''|'#'*) continue ;; esac
  if [ -f "$run/results.json" ] && $PYTHON -c 'import json, sys; sys.exit(not json.load(open(sys.argv[1])).get("finished"))' "$run/state.json" 2>/dev/null; then
    echo "train_queue: $run finished; skipped"
    continue
  fi
  if [ -f "$run/config.json" ]; then
    echo "train_queue: resuming $run"
    # shellcheck disable=SC2086  # word splitting of the argument lists is intended
    $CLI train --resume "$run" --quiet ${TRAIN_ARGS:-} </dev/null
  else
    echo "train_queue: starting $run ($experiment $args)"
    # shellcheck disable=SC2086
    $CLI train "$experiment" --run-dir "$run" --quiet $args ${TRAIN_ARGS:-} </dev/null
  fi
  status=$?
  if [ $status -ne 0 ]; then
    echo "train_queue: $run stopped with status $status; run the queue again to continue"
    exit $status
  fi
done < "$queue"
echo "train_queue: every run of $queue finished"
