#!/usr/bin/env bash
# One test of suite 'fuzz': replay the committed seed corpus (any failure fails the test), then
# fuzz for CLGRAD_FUZZ_SECONDS seconds (default 30). New inputs grow a corpus in the build dir,
# never the committed one; a crash leaves its input in the build dir and fails the test.
# usage: run-fuzz.sh HARNESS NAME SEED_DIR WORK_DIR
set -uo pipefail
harness=$1 name=$2 seeds=$3 work=$4
secs=${CLGRAD_FUZZ_SECONDS:-30}
corpus=$work/corpus/$name
artifacts=$work/artifacts/$name
log=$work/$name.log
mkdir -p "$corpus" "$artifacts"
# The harnesses' scratch files, on tmpfs where there is one (the round trip saves through
# clg_atomic_file, whose fsyncs would otherwise make each run wait for the disk), removed
# afterwards even when a crash kept a harness from cleaning up.
base=${TMPDIR:-}
if [ -z "$base" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then base=/dev/shm; fi
scratch=$(mktemp -d "${base:-/tmp}/clgrad-fuzz-$name.XXXXXX") || exit 1
trap 'rm -rf "$scratch"' EXIT
export TMPDIR=$scratch

# The report part of a libFuzzer log: from the first sanitizer, libFuzzer or invariant line on.
report() {
    awk '/^==[0-9]+==|runtime error|broken invariant|ERROR: libFuzzer|deadly signal|^loaded,|^saved,|^written/ {on=1} on' \
        "$1" | head -n 150
}

shopt -s nullglob
seed_files=("$seeds"/*)
echo "fuzz $name: replaying ${#seed_files[@]} seed inputs from $seeds"
if ! "$harness" "${seed_files[@]}" >"$log" 2>&1; then
    report "$log"
    echo "fuzz $name: FAILED on a committed seed input (the 'Running:' line above names it;" \
        "full log $log)"
    exit 1
fi

echo "fuzz $name: fuzzing for $secs s (CLGRAD_FUZZ_SECONDS), corpus $corpus"
stamp=$work/$name.started
touch "$stamp"
"$harness" -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$artifacts/" "$corpus" "$seeds" >"$log" 2>&1
rc=$?
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
mapfile -t found < <(find "$artifacts" -type f -newer "$stamp")
if [ $rc -ne 0 ]; then
    report "$log"
    echo "fuzz $name: FAILED (exit $rc) after ${execs:-?} executions; crashing input(s):"
    for f in "${found[@]}"; do echo "  $f"; done
    echo "fuzz $name: reproduce with: $harness ${found[0]:-INPUT}   (full log $log)"
    exit 1
fi
echo "fuzz $name: ${execs:-?} executions in $secs s, corpus now $(find "$corpus" -type f | wc -l) inputs" \
    "(stat::number_of_executed_units)"
