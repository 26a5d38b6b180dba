#!/usr/bin/env bash
# clgrad's one set-up script, used by both README commands and by CI:
#   bash tools/setup.sh demo [flags]   install what is missing, build, train the demo MLP
#   bash tools/setup.sh test           install what is missing, build, run every test on pocl,
#                                      then the device suites again on Mesa's rusticl
#                                      (less the conv GEMM-backend variants, suite backends)
#   bash tools/setup.sh build          install what is missing and build
# Idempotent and quiet: with everything present it only runs ninja (a no-op when up to date).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUILD_DIR=${CLGRAD_BUILD_DIR:-build}
PACKAGES=(pocl-opencl-icd ocl-icd-opencl-dev opencl-headers libclblast-dev check meson
          ninja-build pkg-config zlib1g-dev mesa-opencl-icd libpng-dev python3 gcc g++)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    log=$(mktemp)
    if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
           $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
        cat "$log"
        echo "setup: apt-get failed (above)" >&2
        exit 1
    fi
    rm -f "$log"
fi

if [ ! -f "$BUILD_DIR/build.ninja" ]; then
    log=$(mktemp)
    meson setup "$BUILD_DIR" >"$log" 2>&1 || { cat "$log"; exit 1; }
    rm -f "$log"
fi
log=$(mktemp)
ninja -C "$BUILD_DIR" >"$log" 2>&1 || { cat "$log"; exit 1; }
rm -f "$log"

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
    skipped=$(meson test -C "$BUILD_DIR" --list --suite models --suite backends 2>/dev/null |
        sed -n 's/^clgrad:[a-z+]* \/ //p' | sort -u | tr '\n' ' ')
    echo "setup: not run on rusticl: ${skipped}(CNN training and the conv GEMM-backend" \
        "variants: rusticl's llvmpipe runs these GEMMs at least 16x slower than pocl)"
    RUSTICL_ENABLE=llvmpipe CLGRAD_DEVICE=rusticl \
        meson test -C "$BUILD_DIR" --suite device --no-suite backends --print-errorlogs \
        --num-processes 2 \
        --logbase rusticl "$@"
    ;;
*)
    echo "usage: bash tools/setup.sh [build|demo [flags]|test]" >&2
    exit 2
    ;;
esac
