#!/usr/bin/env bash
# Builds the libFuzzer harnesses (Fuzz/, docs/fuzzing.md) with -sanitize=fuzzer,address and runs
# each on a copy of its seed corpus. Exits non-zero when any harness finds a crash, a leak, a
# timeout or an out-of-memory input; the reproducer's path is printed.
#
#   scripts/fuzz.sh [--runs N | --seconds N] [options] [harness...]
#
# Harnesses: json normalize config http (default: all four, one after the other: they share
# the machine with other builds).
#
# Options:
#   --runs N         executions per harness (default 20000)
#   --seconds N      wall time per harness instead of a number of runs
#   --max-len N      libFuzzer -max_len (default per harness: json 8192, config 2048, others 4096)
#   --jobs N         libFuzzer -jobs=N -workers=N (parallel processes; counts are summed)
#   --rss-limit MB   libFuzzer -rss_limit_mb (default 2048)
#   --timeout S      libFuzzer -timeout per input (default 10)
#   --debug          build and run the debug configuration (default: release)
#   --no-build       use the binaries already in .build-fuzz
#   --keep-corpus    start from the corpus the previous run grew (.fuzz/<harness>/corpus), seeds added
#   --scratch-path D SwiftPM scratch path (default .build-fuzz; never the default .build)
#   --work-dir DIR   work files under DIR instead of .fuzz (two runs at once need two; .fuzz*/ is ignored)
#   --               everything after it is passed to libFuzzer unchanged
#
# Work files live under .fuzz/ (gitignored): .fuzz/<harness>/corpus is the copy the fuzzer grows,
# .fuzz/<harness>/fuzz.log its output, .fuzz/artifacts/<harness>/ the reproducers. The checked-in
# seeds (Fuzz/corpus/<harness>/) are never written to. A reproducer runs again with
#   .build-fuzz/release/FuzzHTTP .fuzz/artifacts/http/crash-...
# and belongs, once understood, in Fuzz/regressions/<harness>/ plus a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=20000
seconds=""
max_len=""
jobs=""
rss_limit=2048
timeout=10
configuration=release
build=1
keep_corpus=0
workdir=.fuzz
scratch=.build-fuzz
harnesses=()
extra=()

while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; seconds=""; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --max-len) max_len="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --rss-limit) rss_limit="$2"; shift 2 ;;
    --timeout) timeout="$2"; shift 2 ;;
    --debug) configuration=debug; shift ;;
    --release) configuration=release; shift ;;
    --no-build) build=0; shift ;;
    --keep-corpus) keep_corpus=1; shift ;;
    --work-dir) workdir="${2%/}"; shift 2 ;;
    --scratch-path) scratch="${2%/}"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    json|normalize|config|http) harnesses+=("$1"); shift ;;
    *) echo "fuzz.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ ${#harnesses[@]} -gt 0 ] || harnesses=(json normalize config http)

product() {
  case "$1" in
    json) echo FuzzJSON ;; normalize) echo FuzzNormalize ;; config) echo FuzzConfig ;; http) echo FuzzHTTP ;;
  esac
}

if [ "$build" = 1 ]; then
  for h in "${harnesses[@]}"; do
    p=$(product "$h")
    echo "== building $p ($configuration, -sanitize=fuzzer,address)"
    start=$(date +%s)
    # The linker warns "Cannot export local symbol '__asan_...'" for every ASan helper: harmless.
    if ! CALLRELAY_FUZZ=1 swift build --scratch-path "$scratch" -c "$configuration" \
        -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library --product "$p" \
        > "$scratch-$h.log" 2>&1; then
      grep -v "Cannot export local symbol" "$scratch-$h.log" | tail -40 >&2
      echo "fuzz.sh: building $p failed (full log: $scratch-$h.log)" >&2
      exit 2
    fi
    rm -f "$scratch-$h.log"
    echo "   built in $(( $(date +%s) - start )) s"
  done
fi
bin="$scratch/$configuration"

# The Swift runtime's own crash backtracer does not work under ASan (it faults reading memory and
# can hang); libFuzzer and ASan print the stack instead.
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS="${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}symbolize=1:detect_stack_use_after_return=0"
command -v llvm-symbolizer >/dev/null && export ASAN_SYMBOLIZER_PATH="${ASAN_SYMBOLIZER_PATH:-$(command -v llvm-symbolizer)}"

summary=()
failed=0
for h in "${harnesses[@]}"; do
  p=$(product "$h")
  work="$workdir/$h"
  artifacts="$workdir/artifacts/$h"
  mkdir -p "$work" "$artifacts"
  if [ "$keep_corpus" = 0 ]; then rm -rf "$work/corpus"; fi
  mkdir -p "$work/corpus"
  # The seeds, and every saved reproducer: a fixed finding stays fixed, an open one fails at once.
  cp -p Fuzz/corpus/"$h"/* "$work/corpus/" 2>/dev/null || true
  cp -p Fuzz/regressions/"$h"/* "$work/corpus/" 2>/dev/null || true
  rm -f "$work"/fuzz*.log

  args=("-rss_limit_mb=$rss_limit" "-timeout=$timeout" "-artifact_prefix=$artifacts/" "-print_final_stats=1")
  if [ -n "$seconds" ]; then args+=("-max_total_time=$seconds"); else args+=("-runs=$runs"); fi
  case "$h" in json) len=8192 ;; config) len=2048 ;; *) len=4096 ;; esac
  args+=("-max_len=${max_len:-$len}")
  [ "$h" = http ] && args+=("-dict=Fuzz/http.dict")
  [ -n "$jobs" ] && args+=("-jobs=$jobs" "-workers=$jobs")
  args+=(${extra[@]+"${extra[@]}"})

  if [ -n "$seconds" ]; then budget="$seconds s"; else budget="$runs runs"; fi
  echo "== fuzzing $p: $budget on a copy of Fuzz/corpus/$h + Fuzz/regressions/$h ($(ls "$work/corpus" | wc -l) files)"
  start=$(date +%s.%N)
  set +e
  "$bin/$p" "${args[@]}" "$work/corpus" > "$work/fuzz.log" 2>&1
  status=$?
  set -e
  elapsed=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')

  # With -jobs, every worker logs to fuzz-N.log in the current directory, and the main log
  # repeats those logs: count the workers' only.
  logs=("$work/fuzz.log")
  counted=("$work/fuzz.log")
  workers=()
  for l in fuzz-*.log; do [ -f "$l" ] && mv "$l" "$work/" && workers+=("$work/$l"); done
  if [ ${#workers[@]} -gt 0 ]; then logs+=("${workers[@]}"); counted=("${workers[@]}"); fi
  executions=0
  for l in "${counted[@]}"; do
    n=$(grep -a "stat::number_of_executed_units:" "$l" | awk '{s+=$2} END {print s+0}')
    if [ "$n" = 0 ]; then
      n=$(grep -ao "^#[0-9]\+" "$l" | tail -1 | tr -d '#')
      n=${n:-0}
    fi
    executions=$((executions + n))
  done
  corpus_files=$(ls "$work/corpus" | wc -l)
  rate=$(awk -v n="$executions" -v t="$elapsed" 'BEGIN { printf "%d", (t > 0 ? n / t : 0) }')
  reproducers=$(grep -aho "Test unit written to .*" "${logs[@]}" | sed 's/Test unit written to //' | sort -u || true)
  # libFuzzer exits 72 when interrupted (SIGINT/SIGTERM) and writes no reproducer then.
  interrupted=0
  if [ $status -eq 72 ] && [ -z "$reproducers" ] && grep -aq "libFuzzer: run interrupted" "${logs[@]}"; then interrupted=1; fi
  if [ $interrupted = 1 ]; then
    failed=1
    echo "!! $p interrupted after $executions executions (no finding); continue with --keep-corpus"
    summary+=("$(printf '%-10s %12s %9.1f %9s %7s  %s' "$h" "$executions" "$elapsed" "$rate" "$corpus_files" "interrupted, none")")
  elif [ $status -ne 0 ] || [ -n "$reproducers" ]; then
    failed=1
    kind=$(grep -aho "ERROR: [A-Za-z]*Sanitizer: [a-z-]*\|ERROR: libFuzzer: [a-z-]*\|Fatal error: .*" "${logs[@]}" | head -1 || true)
    echo "!! $p FOUND SOMETHING (exit $status): ${kind:-see the log}"
    grep -a -B2 -A30 "ERROR: \|Fatal error:" "${logs[@]}" | grep -v "Cannot export local symbol" | head -60 || true
    for r in $reproducers; do echo "!! reproducer: $r  (rerun: $bin/$p $r)"; done
    echo "!! full log: ${logs[*]}"
    summary+=("$(printf '%-10s %12s %9.1f %9s %7s  %s' "$h" "$executions" "$elapsed" "$rate" "$corpus_files" "FINDING: ${reproducers:-see log}")")
  else
    echo "   $p: $executions executions in ${elapsed%.*} s, no finding"
    summary+=("$(printf '%-10s %12s %9.1f %9s %7s  %s' "$h" "$executions" "$elapsed" "$rate" "$corpus_files" "none")")
  fi
done

echo
printf '%-10s %12s %9s %9s %7s  %s\n' harness executions seconds exec/s corpus findings
for line in "${summary[@]}"; do echo "$line"; done
exit $failed
