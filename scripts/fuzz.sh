#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for
# SECONDS (default 30). A crash is saved as tests/fuzz/regression/<target>-*
# (commit it: the replay tests run it in every build from then on) and the
# script exits non-zero.
#   scripts/fuzz.sh [SECONDS]
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-30}
build=$top/build-fuzz

# the targets, as tests/fuzz/CMakeLists.txt lists them (their one home)
read -r -a targets <<<"$(sed -n 's/^set(FUZZ_TARGETS \(.*\))$/\1/p' \
    "$top/tests/fuzz/CMakeLists.txt")"

CC=clang cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DFUZZ=ON \
    -DSANITIZE=address,undefined >/dev/null
cmake --build "$build" -j"$(nproc)" --target "${targets[@]/#/fuzz_}"

status=0
for target in "${targets[@]}"; do
    work=$(mktemp -d)
    echo "== fuzz_$target for ${seconds}s"
    if ! "$build/tests/fuzz/fuzz_$target" -max_total_time="$seconds" \
        -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$top/tests/fuzz/regression/$target-" \
        "$work" "$top/tests/fuzz/corpus/$target" 2>"$work.log"; then
        tail -40 "$work.log"
        status=1
    else
        grep -E "^(#[0-9]+ *DONE|Done)" "$work.log" | tail -1 || true
    fi
    rm -rf "$work" "$work.log"
done
exit $status
