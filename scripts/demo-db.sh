#!/usr/bin/env bash
# Builds the demo's SQLite database (the Chinook sample, examples/data/
# chinook) at PATH, if it is not there yet, with Python's own sqlite3.
#   scripts/demo-db.sh PATH
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
db=$1
[ -s "$db" ] && exit 0
mkdir -p "$(dirname "$db")"
python3 - "$top/examples/data/chinook/Chinook_Sqlite.sql" "$db.tmp" <<'PY'
import sqlite3, sys
with open(sys.argv[1], encoding="utf-8-sig") as f:
    script = f.read()
con = sqlite3.connect(sys.argv[2])
con.executescript(script)
con.commit()
con.close()
PY
mv "$db.tmp" "$db"
chmod 644 "$db"
