#!/usr/bin/env bash
# Sets everything up and runs the whole test suite on the real engine, with
# the service and the unit tests built with AddressSanitizer and
# UndefinedBehaviorSanitizer (and warnings as errors), so a memory error or
# a leak anywhere on the request path fails the run. Exits non-zero on any
# failure.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=$top/build-asan

bash "$top/scripts/setup.sh" "$top/build"
bash "$top/scripts/check-format.sh"

cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=Debug \
    -DSANITIZE=address,undefined -DWERROR=ON \
    -DPLAIN_BINARY="$top/build/nbcanvas" >/dev/null
cmake --build "$build" -j"$(nproc)"
cd "$build"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --output-on-failure "$@"

echo "== a short fuzzing run (crashes are kept in tests/fuzz/regression)"
bash "$top/scripts/fuzz.sh" "${NBCANVAS_FUZZ_SECONDS:-20}"
