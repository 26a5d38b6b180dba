#!/usr/bin/env bash
# The GPU proof, in one run on a machine with an NVIDIA GPU and its driver but no network and
# no Debian packages: builds clgrad against Debian's OpenCL ICD loader, CLBlast and check
# unpacked from .debs carried along, points the loader at NVIDIA's OpenCL driver, runs the
# whole test suite on it, then the benchmarks (fp32 peak and SGEMM, MLP/CNN training steps,
# PyTorch on CUDA side by side when that machine's python3 has it).
#
#   bash tools/gpu-proof.sh [DEBS_DIR [OUT_DIR]]
#
# DEBS_DIR (default .gpu/debs) holds the .debs, fetched beforehand on a Debian 12 machine:
#   mkdir -p .gpu/debs && cd .gpu/debs && apt-get download ocl-icd-libopencl1 \
#     ocl-icd-opencl-dev opencl-c-headers opencl-clhpp-headers opencl-headers libclblast1 \
#     libclblast-dev check libsubunit-dev libsubunit0 libpng-dev libpng16-16 zlib1g-dev \
#     zlib1g pkgconf pkgconf-bin libpkgconf3 clinfo meson ninja-build
# They are unpacked into a folder of their own (never over /), and their pkg-config files
# are rewritten to point there. OUT_DIR (default $OUT, else gpu-proof-out) receives one log
# per stage; each stage has a time limit so that a hang leaves the others' results. Set
# GPU_PROOF_STAGES to a subset of "build test bench" to rerun only those (the build is
# reused when it is there). GPU_PROOF_DRIVER names another OpenCL driver library (a dry run
# on pocl: GPU_PROOF_DRIVER=libpocl.so.2 CLGRAD_DEVICE=pocl GPU_PROOF_SIZES=256,512).
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
DEBS=$(realpath "${1:-.gpu/debs}")
OUT_DIR=${2:-${OUT:-gpu-proof-out}}
mkdir -p "$OUT_DIR"
OUT_DIR=$(realpath "$OUT_DIR")
STAGES=${GPU_PROOF_STAGES:-build test bench}
SYSROOT=/tmp/clgrad-sysroot
BUILD=build-gpu
ARCH=x86_64-linux-gnu
start=$SECONDS
say() { printf 'gpu-proof [%4ds] %s\n' $((SECONDS - start)) "$*" | tee -a "$OUT_DIR/summary.txt"; }
has_stage() { [[ " $STAGES " == *" $1 "* ]]; }

# ---- the carried packages, in a sysroot of their own
mkdir -p "$SYSROOT"
for f in "$DEBS"/*.deb; do
    case $(basename "$f") in
        zlib1g*) [ -f /usr/include/zlib.h ] && continue ;;  # the machine's own zlib wins
        meson_*) command -v meson >/dev/null && continue ;;  # and its meson and ninja
        ninja-build_*) command -v ninja >/dev/null && continue ;;
    esac
    dpkg-deb -x "$f" "$SYSROOT" || { say "cannot unpack $f"; exit 1; }
done
# Absolute links (libz.so -> /lib/...) would point out of the sysroot: repoint them into it.
find "$SYSROOT" -type l | while read -r l; do
    t=$(readlink "$l")
    [[ $t == /* && $t != "$SYSROOT"* ]] && ln -sfn "$SYSROOT$t" "$l"
done
sed -i "s#=/usr#=$SYSROOT/usr#g" "$SYSROOT"/usr/lib/$ARCH/pkgconfig/*.pc "$SYSROOT"/usr/share/pkgconfig/*.pc 2>/dev/null
export PKG_CONFIG_PATH=$SYSROOT/usr/lib/$ARCH/pkgconfig:$SYSROOT/usr/share/pkgconfig
export LD_LIBRARY_PATH=$SYSROOT/usr/lib/$ARCH:$SYSROOT/lib/$ARCH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# the compiler's own search paths too, for builds that see only part of pkg-config's flags
# (tests/install prefixes every path with its staging root)
export CPATH=$SYSROOT/usr/include${CPATH:+:$CPATH}
export LIBRARY_PATH=$SYSROOT/usr/lib/$ARCH${LIBRARY_PATH:+:$LIBRARY_PATH}
export PATH=$PATH:$SYSROOT/usr/bin
command -v pkg-config >/dev/null || ln -sf "$SYSROOT/usr/bin/pkgconf" "$SYSROOT/usr/bin/pkg-config"
if ! command -v meson >/dev/null; then
    export PYTHONPATH=$SYSROOT/usr/lib/python3/dist-packages${PYTHONPATH:+:$PYTHONPATH}
fi

# ---- NVIDIA's OpenCL driver (or GPU_PROOF_DRIVER's library), through the carried ICD loader
lib=${GPU_PROOF_DRIVER:-$(find /usr/local/nvidia /usr/lib/$ARCH /usr/lib64 /usr/lib -maxdepth 3 \
        -name 'libnvidia-opencl.so.1' 2>/dev/null | head -n 1)}
if [ -z "$lib" ]; then
    say "no libnvidia-opencl.so.1 on this machine"
    exit 1
fi
mkdir -p "$SYSROOT/icd"
echo "$lib" >"$SYSROOT/icd/nvidia.icd"
export OCL_ICD_VENDORS=$SYSROOT/icd
export CLGRAD_DEVICE=${CLGRAD_DEVICE:-nvidia}
export CLGRAD_CACHE_DIR=/tmp/clgrad-cache
say "driver: $lib"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>&1 |
    tee -a "$OUT_DIR/summary.txt"
"$SYSROOT/usr/bin/clinfo" -l >"$OUT_DIR/clinfo.txt" 2>&1
"$SYSROOT/usr/bin/clinfo" >>"$OUT_DIR/clinfo.txt" 2>&1
head -n 8 "$OUT_DIR/clinfo.txt" | tee -a "$OUT_DIR/summary.txt"
say "compilers: $(cc --version 2>&1 | head -n 1); meson $(meson --version 2>&1); ninja $(ninja --version 2>&1)"

# One test under the debugger there is (cuda-gdb on NVIDIA's images also debugs host code),
# with MALLOC_PERTURB_ as meson test sets it, printing every thread's backtrace at a crash.
debug_test() {
    local t=$1 exe=$BUILD/tests/test-$1 dbg log
    dbg=$(command -v gdb || command -v cuda-gdb || true)
    if [ -z "$dbg" ] || [ ! -x "$exe" ]; then return 0; fi
    log="$OUT_DIR/backtrace-$t${CK_RUN_CASE:+-${CK_RUN_CASE// /_}}.log"
    # shellcheck disable=SC2016
    say "test-$t under $dbg${CK_RUN_CASE:+, case '$CK_RUN_CASE'}"
    CK_FORK=no MALLOC_PERTURB_=${MALLOC_PERTURB_:-47} CLGRAD_TEST_SOURCE_DIR=$PWD/tests \
        timeout 120 "$dbg" -batch -ex run -ex 'thread apply all bt 12' --args "$exe" >"$log" 2>&1
    grep -E '^#[0-9]+ |^Thread |signal SIG|Checks|Inferior' "$log" | grep -v 'in ?? ()' | head -n 60 |
        tee -a "$OUT_DIR/summary.txt"
}

# ---- build
if has_stage build || [ ! -f "$BUILD/build.ninja" ]; then
    # -Dwerror=false: this machine's compiler may be newer than Debian 12's and warn anew;
    # the warnings are kept in the log.
    { [ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" --buildtype=release -Dwerror=false; } \
        >"$OUT_DIR/build.log" 2>&1 &&
        timeout 300 ninja -C "$BUILD" >>"$OUT_DIR/build.log" 2>&1
    rc=$?
    say "build: rc $rc ($(grep -c 'warning:' "$OUT_DIR/build.log") warnings)"
    [ $rc -eq 0 ] || { tail -n 40 "$OUT_DIR/build.log"; exit 1; }
fi
"$BUILD/tools/clgrad-devices" 2>&1 | tee -a "$OUT_DIR/summary.txt"

# ---- the whole suite on the GPU
if has_stage test; then
    timeout "${GPU_PROOF_TEST_SECONDS:-330}" meson test -C "$BUILD" --num-processes 8 \
        --print-errorlogs >"$OUT_DIR/test.log" 2>&1
    rc=$?
    cp "$BUILD/meson-logs/testlog.txt" "$OUT_DIR/testlog.txt" 2>/dev/null
    say "test: rc $rc"
    grep -E '^ *[0-9]+/[0-9]+ |^(Ok|Fail|Timeout|Skipped):' "$OUT_DIR/test.log" | tee -a "$OUT_DIR/summary.txt"
    # A test killed by a signal is run once more under the debugger (below), for backtraces.
    sed -n 's/.*clgrad:\([a-z0-9-]*\) *FAIL .*killed by signal.*/\1/p' "$OUT_DIR/test.log" |
        sort -u | while read -r t; do debug_test "$t"; done
fi
# GPU_PROOF_STAGES=debug: GPU_PROOF_DEBUG_TEST (a test's name) under the debugger, whole and
# then each of GPU_PROOF_DEBUG_CASES (check's CK_RUN_CASE names, ';'-separated) in a process
# of its own; then three times under meson test with MALLOC_PERTURB_=0 (fresh and freed heap
# memory left as it is), to tell a heap-dependent failure from one that is not.
if has_stage debug; then
    t=${GPU_PROOF_DEBUG_TEST:-compile}
    debug_test "$t"
    IFS=';' read -r -a cases <<<"${GPU_PROOF_DEBUG_CASES:-}"
    for c in "${cases[@]}"; do CK_RUN_CASE=$c debug_test "$t"; done
    MALLOC_PERTURB_=0 timeout 120 meson test -C "$BUILD" --repeat 3 "$t" >"$OUT_DIR/unperturbed-$t.log" 2>&1
    say "test-$t three times with MALLOC_PERTURB_=0: rc $?"
    grep -E '^ *[0-9]+/[0-9]+ |^(Ok|Fail):' "$OUT_DIR/unperturbed-$t.log" | tee -a "$OUT_DIR/summary.txt"
fi

# ---- benchmarks
if has_stage bench; then
    timeout 120 "$BUILD/tools/bench-engine" --peak --sizes "${GPU_PROOF_SIZES:-1024,2048,4096,8192}" \
        --backend clblast --runs 3 >"$OUT_DIR/bench-engine-big.log" 2>&1
    say "bench-engine (large SGEMM): rc $?"
    tee -a "$OUT_DIR/summary.txt" <"$OUT_DIR/bench-engine-big.log"
    timeout 120 "$BUILD/tools/bench-engine" --runs 3 >"$OUT_DIR/bench-engine.log" 2>&1
    say "bench-engine (both backends): rc $?"
    tee -a "$OUT_DIR/summary.txt" <"$OUT_DIR/bench-engine.log"
    if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
        timeout 240 python3 tools/bench-compare.py --build "$BUILD" --torch-python "$(command -v python3)" \
            --torch-device cuda --rounds 3 --steps 100 >"$OUT_DIR/bench-compare.log" 2>&1
        say "bench-compare (clgrad on OpenCL vs PyTorch on CUDA): rc $?"
        tee -a "$OUT_DIR/summary.txt" <"$OUT_DIR/bench-compare.log"
    else
        say "PyTorch with CUDA is not on this machine: clgrad's training steps alone"
        timeout 120 "$BUILD/tools/bench-train" --model both --runs 5 >"$OUT_DIR/bench-train.log" 2>&1
        tee -a "$OUT_DIR/summary.txt" <"$OUT_DIR/bench-train.log"
    fi
fi
say "done"
