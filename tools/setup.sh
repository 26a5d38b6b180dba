#!/usr/bin/env bash
# clgrad's one set-up script, used by both README commands and by CI:
#   bash tools/setup.sh demo [flags]   install what is missing, build, train the demo MLP
#   bash tools/setup.sh test           install what is missing, build, run every test on pocl,
#                                      then the device suites again on Mesa's rusticl
#                                      (less the conv GEMM-backend variants, suite backends),
#                                      then the host and device suites under ASan + UBSan and
#                                      the fuzz suite, in a clang build ($BUILD_DIR-san)
#   bash tools/setup.sh sanitize       install what is missing, build, and only the last step
#                                      of test: ASan + UBSan suites and the fuzz suite
#   bash tools/setup.sh build          install what is missing and build
# Idempotent and quiet: with everything present it only runs ninja (a no-op when up to date).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUILD_DIR=${CLGRAD_BUILD_DIR:-build}
PACKAGES=(pocl-opencl-icd ocl-icd-opencl-dev opencl-headers libclblast-dev check meson
          ninja-build pkg-config zlib1g-dev mesa-opencl-icd libpng-dev python3 gcc g++)

# Installs whichever of the given Debian packages are missing.
install_missing() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    echo "setup: installing ${missing[*]}"
    local sudo="" log
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    log=$(mktemp)
    if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
           $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
        cat "$log"
        echo "setup: apt-get failed (above)" >&2
        exit 1
    fi
    rm -f "$log"
}
install_missing "${PACKAGES[@]}"

if [ ! -f "$BUILD_DIR/build.ninja" ]; then
    log=$(mktemp)
    meson setup "$BUILD_DIR" >"$log" 2>&1 || { cat "$log"; exit 1; }
    rm -f "$log"
fi
log=$(mktemp)
ninja -C "$BUILD_DIR" >"$log" 2>&1 || { cat "$log"; exit 1; }
rm -f "$log"

# The sanitizer build: clang-15 (on Debian 12 pocl's own compiler, whose package brings ASan,
# UBSan and libFuzzer along) and llvm-15 for the symbolizer those runtimes look for.
SAN_DIR=$BUILD_DIR-san
SAN_PACKAGES=(clang-15 llvm-15)
# Under ASan + UBSan: suite host and all of suite device but 'install', which links a gcc-built
# program against the instrumented shared library (that cannot link without the ASan runtime).
# The device tests spend their time in pocl, which is not instrumented and whose kernel cache
# the pocl run above has just filled: all of them take about 3 min on 2 cores (12 min with an
# empty cache), little more than a subset would, and a test added later is covered unasked.
# Then suite fuzz: each harness replays its corpus and fuzzes for CLGRAD_FUZZ_SECONDS (30 s),
# two at a time. In all, 5 to 6 min from a cold build on 2 cores.
sanitize_and_fuzz() {
    local start=$SECONDS log tests
    echo "setup: ASan + UBSan build in $SAN_DIR, host and device suites, then suite fuzz"
    install_missing "${SAN_PACKAGES[@]}"
    if [ ! -f "$SAN_DIR/build.ninja" ]; then
        log=$(mktemp)
        CC=clang-15 CXX=clang++-15 meson setup "$SAN_DIR" --buildtype=debugoptimized \
            -Db_sanitize=address,undefined -Db_lundef=false -Dfuzz=true >"$log" 2>&1 ||
            { cat "$log"; exit 1; }
        rm -f "$log"
    fi
    log=$(mktemp)
    ninja -C "$SAN_DIR" >"$log" 2>&1 || { cat "$log"; exit 1; }
    rm -f "$log"
    tests=$(meson test -C "$SAN_DIR" --list --suite host --suite device 2>/dev/null |
        sed -n 's/^clgrad:[a-z+]* \/ //p' | grep -vx install)
    # shellcheck disable=SC2086
    meson test -C "$SAN_DIR" --print-errorlogs --num-processes 2 --logbase sanitize $tests
    meson test -C "$SAN_DIR" --print-errorlogs --num-processes 2 --logbase fuzz --suite fuzz
    sed -n 's/^fuzz \([^:]*\): \([0-9]* executions in [0-9]* s\).*/setup: fuzz \1: \2/p' \
        "$SAN_DIR/meson-logs/fuzz.txt"
    echo "setup: sanitizer and fuzz runs took $((SECONDS - start)) s"
}

cmd=${1:-build}
[ $# -gt 0 ] && shift
case "$cmd" in
build)
    echo "setup: built in $BUILD_DIR"
    ;;
demo)
    exec "$BUILD_DIR/examples/mlp_mnist" "$@"
    ;;
test)
    meson test -C "$BUILD_DIR" --print-errorlogs --num-processes 2 "$@"
    echo "setup: device suites again on Mesa rusticl (llvmpipe)"
    # Said by name, not silently dropped (the reasons are measured, see tests/meson.build).
    skipped=$(meson test -C "$BUILD_DIR" --list --suite models --suite backends --suite long \
        2>/dev/null | sed -n 's/^clgrad:[a-z+]* \/ //p' | sort -u | tr '\n' ' ')
    echo "setup: not run on rusticl: ${skipped}(CNN training and the conv GEMM-backend" \
        "variants: rusticl's llvmpipe runs these GEMMs at least 16x slower than pocl;" \
        "long-graph, rnn and transformer: plans of thousands of launches, at milliseconds per launch there)"
    RUSTICL_ENABLE=llvmpipe CLGRAD_DEVICE=rusticl \
        meson test -C "$BUILD_DIR" --suite device --no-suite backends --no-suite long \
        --print-errorlogs \
        --num-processes 2 \
        --logbase rusticl "$@"
    sanitize_and_fuzz
    ;;
sanitize)
    sanitize_and_fuzz
    ;;
*)
    echo "usage: bash tools/setup.sh [build|demo [flags]|test|sanitize]" >&2
    exit 2
    ;;
esac
