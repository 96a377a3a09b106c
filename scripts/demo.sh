#!/usr/bin/env bash
# The main job: set everything up, start nbcanvas on loopback, render the
# chart example through the HTTP API, and say where to look.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
listen=${NBCANVAS_LISTEN:-127.0.0.1:8080}
out=$top/out

bash "$top/scripts/setup.sh"
mkdir -p "$out"

# the demo's database: the Chinook sample in SQLite, the datasource "demo"
bash "$top/scripts/demo-db.sh" "$out/chinook.db"
cat >"$out/nbcanvas.json" <<JSON
{"datasources": [{"name": "demo", "kind": "sqlite", "path": "$out/chinook.db"}]}
JSON

if ! curl -fsS --max-time 2 "http://$listen/healthz" >/dev/null 2>&1; then
    nohup "$top/build/nbcanvas" serve --listen "$listen" --config "$out/nbcanvas.json" \
        >"$out/nbcanvas.log" 2>&1 &
    echo $! >"$out/nbcanvas.pid"
    for _ in $(seq 1 50); do
        curl -fsS --max-time 1 "http://$listen/healthz" >/dev/null 2>&1 && break
        sleep 0.2
    done
fi
curl -fsS "http://$listen/readyz" >/dev/null

for example in chart text2sql analysis sql-chart r-chart; do
    curl -fsS -X POST -H 'Content-Type: application/json' \
        --data-binary @"$top/examples/$example.json" \
        "http://$listen/v1/render" -o "$out/$example.html"
done
curl -fsS -X POST -H 'Content-Type: application/json' \
    --data-binary @"$top/examples/text2sql-zip.json" \
    "http://$listen/v1/render" -o "$out/text2sql.zip"

cat <<MSG

nbcanvas is serving on http://$listen (log: $out/nbcanvas.log, pid in $out/nbcanvas.pid)
Open http://$listen/ in a browser for the canvas page: pick an example, edit, Run.
Rendered examples:
  $out/chart.html      a matplotlib chart
  $out/text2sql.html   an SQL query on SQLite shown as a table
  $out/text2sql.zip    the same with the query result as an .xlsx (artifacts/)
  $out/analysis.html   summary tables and charts of a CSV
  $out/sql-chart.html  a live SQL query on the demo database, as a table and a chart
  $out/r-chart.html    the sales CSV in R: a ggplot2 chart and a dplyr summary
Query the demo database yourself:
  curl -s -X POST -H 'Content-Type: application/json' \\
       -d '{"datasource": "demo", "query": "SELECT Name FROM Artist LIMIT 5", "format": "csv"}' \\
       http://$listen/v1/sql
Try it yourself:
  curl -s -X POST -H 'Content-Type: application/json' \\
       -d '{"cells": ["import numpy as np\\nnp.arange(6).reshape(2, 3)"], "format": "json"}' \\
       http://$listen/v1/render
Stop it with: kill \$(cat $out/nbcanvas.pid)
MSG
