#!/bin/sh
# The relay's protocol on the real image: records every case afresh with
# the service's own code and the current notebook image, then replays the
# fresh recordings through the executor (test_relay_replay). To refresh
# the committed recordings after a change on either side:
#   build/tests/relay_record tests/relay/cases.json tests/data/relay
set -eu
record=$1
replay=$2
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$record" "$here/cases.json" "$dir"
RELAY_RECORDINGS=$dir "$replay"
