#!/usr/bin/env bash
# Run one libFuzzer target (tests/fuzz/fuzz_TARGET.c) for SECONDS seconds.
#   scripts/fuzz.sh TARGET SECONDS [libFuzzer flags...]
#   TARGET: toml job proto shard ckpt idx csv
# Builds build-fuzz/ with clang-14 (-DNN_FUZZ=ON) and its seeds if missing.
# The corpus grows in $NN_FUZZ_CORPUS/TARGET (default build-fuzz/fuzz-corpus),
# seeded from $NN_FUZZ_SEEDS/TARGET (default build-fuzz/fuzz-seeds, made by
# tests/fuzz/seeds.sh); a crash is saved as $NN_FUZZ_CORPUS/TARGET-crash-*
# and the script exits non-zero. Reproduce: build-fuzz/fuzz_TARGET FILE.
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
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
exec "$B/fuzz_$t" -max_total_time="$secs" -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$corpus/$t-" "$@" "$corpus/$t" "$seeds/$t"
