#!/bin/sh
# Builds the fuzz targets and runs each for a bounded time on a copy of its
# seed corpus (what the run adds stays out of the repository).
#   tests/fuzz/run.sh [SECONDS]       default 60 per target
# FUZZ_OUT (default /tmp/tcpd-fuzz) is where the targets, corpus copies,
# logs and any crashing inputs go. Exits non-zero if a target found a crash,
# a leak, a timeout or an out-of-memory, and prints the input that caused it.
set -eu
cd "$(dirname "$0")/../.."

SECONDS_EACH=${1:-60}
OUT=${FUZZ_OUT:-/tmp/tcpd-fuzz}
TARGETS="varlink config control proxy"

tests/fuzz/build.sh "$OUT"

# Findings end in a stack trace, not a shrug. A smaller quarantine than
# ASan's 256 MiB still catches a use after free within one input, and halves
# the time fuzz_varlink spends faulting in fresh pages for every allocation.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}:quarantine_size_mb=16"
# what --check-config prints must load back to the same settings
export TCPD_FUZZ_REPRINT="${TCPD_FUZZ_REPRINT:-1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"

failed=0
for t in $TARGETS; do
        work="$OUT/run-$t"
        rm -rf "$work"
        mkdir -p "$work/corpus" "$work/artifacts"
        cp tests/fuzz/corpus/"$t"/* "$work/corpus/"
        echo "run.sh: fuzz_$t for ${SECONDS_EACH}s on $(find "$work/corpus" -type f | wc -l) seeds"
        start=$(date +%s)
        # The seeds are replayed first: a crash saved as a regression seed
        # fails here at once.
        if "$OUT/fuzz_$t" "$work/corpus" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
                -print_final_stats=1 -artifact_prefix="$work/artifacts/" >"$work/log" 2>&1; then
                status=ok
        else
                status=FAILED
                failed=1
        fi
        end=$(date +%s)
        # libFuzzer's last progress line has the coverage (cov: ft:) and exec/s.
        last=$(grep -E '^#[0-9]+' "$work/log" | tail -n 1 || true)
        echo "run.sh: fuzz_$t $status after $((end - start))s: $last"
        grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$work/log" |
                sed "s/^/run.sh: fuzz_$t /" || true
        if [ "$status" = FAILED ]; then
                # the report: sanitizer summary and the crashing input
                grep -E 'ERROR: |SUMMARY: |check failed|runtime error|Test unit written to|ALARM|out-of-memory' \
                        "$work/log" | head -n 20 | sed "s/^/run.sh: fuzz_$t: /"
                for a in "$work"/artifacts/*; do
                        [ -e "$a" ] || continue
                        echo "run.sh: fuzz_$t: crashing input: $a"
                        echo "run.sh: fuzz_$t: replay with: $OUT/fuzz_$t $a"
                done
                echo "run.sh: fuzz_$t: whole log: $work/log"
        fi
done
exit "$failed"
