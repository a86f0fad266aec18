#!/bin/bash
# e2e_bench.sh: `nntrain bench allreduce` runs under mpirun at 1 and 2 ranks,
# prints one well-formed JSON object per size (or the table), checks that the
# ring and MPI_Allreduce agree, and rejects bad options with exit code 2.
set -u
: "${NNTRAIN:?set NNTRAIN to the nntrain binary}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
fail=0

for np in 1 2 3; do
  timeout -k 5 120 mpirun -np $np --oversubscribe "$NNTRAIN" bench allreduce \
    --sizes 4K,100K,1M --iters 3 --chunk 16K --json >"$out/json$np" 2>"$out/err$np"
  rc=$?
  if [ $rc -ne 0 ]; then echo "FAIL: np $np: exit $rc"; cat "$out/err$np"; fail=1; continue; fi
  if python3 - "$out/json$np" $np <<'PY'
import json, sys
lines = [l for l in open(sys.argv[1]) if l.strip()]
np_ = int(sys.argv[2])
assert len(lines) == 3, f"expected 3 JSON lines, got {len(lines)}"
want = [4096, 102400, 1048576]
for l, b in zip(lines, want):
    o = json.loads(l, parse_constant=lambda c: sys.exit("not JSON: " + c))
    for k in ("bytes", "ring_us", "mpi_us", "ring_busbw_gbps", "mpi_busbw_gbps"):
        assert k in o, f"missing {k} in {l}"
    assert o["bytes"] == b, o
    assert o["ranks"] == np_, o
    assert o["ring_us"] > 0 and o["mpi_us"] > 0, o
    if np_ == 1:
        assert o["ring_busbw_gbps"] == 0, o
    else:
        bw = 2 * (np_ - 1) / np_ * b / (o["ring_us"] * 1e3)
        assert abs(bw - o["ring_busbw_gbps"]) <= 0.002 + 0.01 * bw, (bw, o)
PY
  then echo "ok: np $np JSON"; else echo "FAIL: np $np JSON:"; cat "$out/json$np"; fail=1; fi
done

timeout -k 5 60 mpirun -np 2 "$NNTRAIN" bench allreduce --sizes 64K --iters 3 >"$out/table" 2>&1
if [ $? -ne 0 ] || ! grep -q "ring_us" "$out/table" || ! grep -qE "^ +65536 " "$out/table"; then
  echo "FAIL: table"; cat "$out/table"; fail=1
else
  echo "ok: table"
fi

# Usage errors: exit 2 with a one-line message, before MPI starts.
check_usage() {
  local want=$1
  shift
  "$NNTRAIN" bench "$@" >"$out/u" 2>&1
  local rc=$?
  if [ $rc -ne 2 ] || ! grep -q "$want" "$out/u"; then
    echo "FAIL: 'bench $*' exit $rc:"; cat "$out/u"; fail=1
  else
    echo "ok: 'bench $*' -> $(head -1 "$out/u")"
  fi
}
check_usage "expected 'allreduce'" broadcast
check_usage "not a positive multiple of 4" allreduce --sizes 4K,6
check_usage "unknown option '--bogus'" allreduce --bogus
check_usage "needs a value" allreduce --iters
"$NNTRAIN" bench --help | grep -q "usage: mpirun" || { echo "FAIL: --help"; fail=1; }
exit $fail
