#!/bin/sh
# Records the current image's driver into a fresh folder and runs the
# protocol tests on it: a change to either side of the protocol that the
# other side does not follow fails here, even before the committed
# recordings are refreshed.
#   check_live.sh DRIVER_MAKE_JOB TEST_DRIVER
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 "$here/record.py" "$1" "$dir"
NBCANVAS_DRIVER_RECORDINGS=$dir "$2"
