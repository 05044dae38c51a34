#!/usr/bin/env bash
# Regenerates the run report example shown in the README and docs/report.md:
#   docs/examples/report-errors.html  the report of a real `shiftover demo --scenario errors` run
#   docs/img/report-errors.png        Chromium's screenshot of its top part
# The demo starts HAProxy, Prometheus, two apps and Locust itself (about a minute) and rolls
# back by itself (exit 3, as expected). Needs `make system venv`. Usage, from anywhere:
#   docs/examples/make_report_example.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-.venv/bin}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
work=$(mktemp -d /tmp/shiftover-report-example.XXXXXX)
trap 'rm -rf "$work"' EXIT

code=0
"$BIN/shiftover" demo --scenario errors --workdir "$work" --json > "$work/demo.jsonl" || code=$?
if [ "$code" -ne 3 ]; then
  echo "the errors demo should roll back (exit 3), it exited $code: see $work/demo.jsonl" >&2
  trap - EXIT
  exit 1
fi
"$BIN/shiftover" report "$work/plan.yaml" --state "$work/state.db" -o docs/examples/report-errors.html
"$BIN/shiftover" report "$work/plan.yaml" --state "$work/state.db" --format md > "$work/report.md"
cat "$work/report.md"
"$CHROMIUM" --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run \
  --user-data-dir="$work/profile" --host-resolver-rules="MAP * ~NOTFOUND" \
  --window-size=1280,2300 --virtual-time-budget=15000 \
  --screenshot="$PWD/docs/img/report-errors.png" "file://$PWD/docs/examples/report-errors.html" \
  2> "$work/chromium.log"
echo "wrote docs/examples/report-errors.html ($(du -h docs/examples/report-errors.html | cut -f1)) and docs/img/report-errors.png"
