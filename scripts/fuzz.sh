#!/usr/bin/env bash
# Run one libFuzzer target (tests/fuzz/fuzz_TARGET.c) for SECONDS seconds.
#   scripts/fuzz.sh TARGET SECONDS [libFuzzer flags...]
#   TARGET: toml job proto shard ckpt idx csv
# Builds build-fuzz/ with clang-14 (-DNN_FUZZ=ON) and its seeds if missing.
# The corpus grows in $NN_FUZZ_CORPUS/TARGET (default build-fuzz/fuzz-corpus),
# seeded from $NN_FUZZ_SEEDS/TARGET (default build-fuzz/fuzz-seeds, made by
# tests/fuzz/seeds.sh); a crash is saved as $NN_FUZZ_CORPUS/TARGET-crash-*
# and the script exits non-zero. Reproduce: build-fuzz/fuzz_TARGET FILE.
# Runs in libFuzzer's fork mode, going on past timeouts and crashes (saved
# as TARGET-timeout-* / TARGET-crash-*): libhdf5 1.10 itself loops forever or
# crashes on some damaged files (H5HG_read of a corrupt global heap), which
# no check of ours can prevent. Each crash is then rerun: one whose innermost
# frame is in libhdf5 is reported and renamed TARGET-hdf5-*; any other crash
# or leak fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:?usage: scripts/fuzz.sh TARGET SECONDS [libFuzzer flags]}
secs=${2:?usage: scripts/fuzz.sh TARGET SECONDS [libFuzzer flags]}
shift 2
B=${NN_FUZZ_BUILD:-build-fuzz}
if [ ! -x "$B/fuzz_$t" ]; then
  cmake -S . -B "$B" -DCMAKE_C_COMPILER=clang-14 -DNN_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DNN_NATIVE=OFF >/dev/null
  cmake --build "$B" -j"$(nproc)"
fi
B=$(cd "$B" && pwd)
seeds=${NN_FUZZ_SEEDS:-$B/fuzz-seeds}
[ -d "$seeds/$t" ] || NN_FUZZ_BUILD=$B NNTRAIN=${NNTRAIN:-$B/nntrain} bash tests/fuzz/seeds.sh "$seeds"
corpus=${NN_FUZZ_CORPUS:-$B/fuzz-corpus}
mkdir -p "$corpus/$t"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:fast_unwind_on_malloc=0:allocator_may_return_null=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/fuzz/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
stamp=$(mktemp)
trap 'rm -f "$stamp"' EXIT
rc=0
"$B/fuzz_$t" -fork=1 -ignore_timeouts=1 -ignore_crashes=1 -max_total_time="$secs" -timeout=10 \
  -rss_limit_mb=2048 -artifact_prefix="$corpus/$t-" "$@" "$corpus/$t" "$seeds/$t" || rc=$?
# Triage this run's crashes: one whose innermost frame (past the sanitizer's
# interceptors) is in libhdf5 is libhdf5's (reported, kept as $t-hdf5-*);
# one that does not reproduce alone is reported; any other crash or leak is
# ours and fails. libFuzzer's own non-zero exit counts only with no artifact.
status=0
found=0
for f in $(find "$corpus" -maxdepth 1 -name "$t-crash-*" -newer "$stamp") \
         $(find "$corpus" -maxdepth 1 -name "$t-leak-*" -newer "$stamp"); do
  found=$((found + 1))
  rerun=0
  out=$("$B/fuzz_$t" -runs=1 "$f" 2>&1) || rerun=$?
  # The innermost frame that is either libhdf5's or ours (src/, tests/): libc's
  # memcpy and the sanitizer's interceptors (which clang-14 may name plainly,
  # "in strdup (.../fuzz_ckpt+0x...)") say nothing about whose bug it is.
  frame0=$(grep -E '^ +#[0-9]+ ' <<<"$out" | grep -m1 -E "libhdf5|$PWD/(src|tests)/" || true)
  if [ "$rerun" = 0 ]; then
    echo "fuzz.sh: $f: does not reproduce when run alone (kept)"
  elif [[ $f == *-crash-* && $frame0 == *libhdf5* ]]; then
    echo "fuzz.sh: $f: crash inside libhdf5, not in nntrain: $frame0"
    mv "$f" "$corpus/$t-hdf5-${f##*-}"
  else
    echo "fuzz.sh: $f: FAILURE found by fuzz_$t: $frame0"
    status=1
  fi
done
# 70 is libFuzzer's timeout exit: a run hung (libhdf5 1.10.8 loops in H5HG_read on
# damaged variable-length strings, a known hang we cannot prevent;
# README.md, Fuzzing). Reported, with the input kept as $t-timeout-*, not failed.
if [ "$status" = 0 ] && [ "$found" = 0 ] && [ "$rc" = 70 ]; then
  echo "fuzz.sh: fuzz_$t: a run timed out (kept as $corpus/$t-timeout-*; reproduce and check the stack)"
  rc=0
fi
[ "$status" = 0 ] && [ "$found" = 0 ] && [ "$rc" != 0 ] && echo "fuzz.sh: fuzz_$t exited $rc" && status=$rc
exit "$status"
