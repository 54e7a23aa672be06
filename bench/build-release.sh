# Sourced by bench/run.sh and bench/storage.sh (not run on its own): installs what the benchmarks
# need and builds the release binary as it ships (static Swift stdlib) unless build=0, then strips
# it. Expects `root` (the repository) and `build` (1 or 0); sets `bin` (unstripped) and `stripped`.
# Environment: BENCH_SCRATCH (build dir, default .build-bench).
echo "==> dependencies" >&2
CALLRELAY_BENCH=1 "$root/scripts/install-deps.sh"

scratch=${BENCH_SCRATCH:-.build-bench}
bin="$root/$scratch/release/callrelay"
if [ "$build" = 1 ]; then
  echo "==> building callrelay (release, --static-swift-stdlib, scratch $scratch; 2-3 min cold on 2 cores)" >&2
  start=$(date +%s)
  swift build -c release --static-swift-stdlib --product callrelay --scratch-path "$scratch" 2>&1 | tail -n 1 >&2
  echo "    built in $(( $(date +%s) - start )) s" >&2
fi
[ -x "$bin" ] || { echo "no binary at $bin (run without --no-build)" >&2; exit 1; }
stripped="$root/$scratch/callrelay.stripped"
strip -o "$stripped" "$bin"
