#!/usr/bin/env bash
# `make run`: the whole platform on this machine. Starts a Temporal dev server with its Web UI
# (unless one already answers), the worker, the api with its dashboard, imports the sample dataset into an empty store and
# starts every enabled run. Ctrl-C stops what this script started; the next `make run` picks
# up where this one left off (the dev server's database and the store live under ./data).
set -euo pipefail
cd "$(dirname "$0")/.."

addr=${MHA_TEMPORAL_ADDRESS:-127.0.0.1:7233}
ui_port=${MHA_UI_PORT:-8233}
host=${addr%:*}
port=${addr##*:}
mkdir -p data

started=()
stop_all() {
  trap - INT TERM EXIT
  echo
  echo "Stopping: letting samples in flight finish..."
  for ((i=${#started[@]}-1; i>=0; i--)); do
    kill -TERM "${started[i]}" 2>/dev/null || true
    wait "${started[i]}" 2>/dev/null || true
  done
  echo "Stopped. Run 'make run' again to continue where this left off."
}
trap stop_all EXIT
trap 'exit 130' INT TERM
trap '' PIPE # a closed stdout (say, `make run | tee`) must not skip the cleanup

healthy() { bin/temporal operator cluster health --address "$addr" >/dev/null 2>&1; }

if healthy; then
  echo "Using the Temporal server already answering at $addr."
  ui="(the UI of the server at $addr)"
else
  echo "Starting a Temporal dev server at $addr (database data/temporal.db, log data/temporal.log)..."
  # setsid: Ctrl-C reaches the worker first; the server stops only after the worker has
  # finished its samples in flight and reported them.
  setsid bin/temporal server start-dev --ip "$host" --port "$port" --ui-port "$ui_port" \
    --db-filename data/temporal.db --log-level warn \
    --dynamic-config-value system.enableActivityEagerExecution=true \
    --search-attribute Annotator=Keyword --search-attribute Domain=Keyword --search-attribute RunStatus=Keyword \
    --search-attribute RunChangedAt=Datetime \
    >>data/temporal.log 2>&1 &
  started+=($!)
  for _ in $(seq 1 120); do
    healthy && break
    kill -0 "${started[0]}" 2>/dev/null || { echo "The dev server exited; see data/temporal.log" >&2; exit 1; }
    sleep 0.5
  done
  healthy || { echo "The dev server did not answer within 60 s; see data/temporal.log" >&2; exit 1; }
  ui="http://$host:$ui_port/namespaces/default/workflows"
fi

export MHA_TEMPORAL_ADDRESS=$addr
echo "Starting the worker (log data/worker.log)..."
bin/worker >>data/worker.log 2>&1 &
started+=($!)

listen=${MHA_LISTEN:-127.0.0.1:8080}
echo "Starting the api and dashboard at http://$listen/ (log data/api.log)..."
MHA_LISTEN=$listen MHA_WEB_UI=${MHA_WEB_UI:-http://$host:$ui_port} bin/api >>data/api.log 2>&1 &
started+=($!)

bin/starter import --if-empty
bin/starter start --all

cat <<MSG

The platform is running.
  Dashboard: http://$listen/
  Web UI:    $ui
  Status:    bin/starter status --watch
  Signals:   bin/starter pause --all   (or: bin/temporal workflow signal -w annotation-1-urgency --name pause)
Press Ctrl-C to stop.
MSG
wait "${started[@]}"
