#!/bin/bash
# e2e_bench.sh: `nntrain bench allreduce` runs under mpirun at 1 and 2 ranks,
# prints one well-formed JSON object per size (or the table), checks that the
# ring, the hierarchical all-reduce, the bf16/fp16 ring and MPI_Allreduce
# agree, and rejects bad options with exit code 2. With --hosts-of 2 the
# JSON names the simulated hosts and auto's choice.
set -u
: "${NNTRAIN:?set NNTRAIN to the nntrain binary}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
fail=0

for run in "1 1 bf16" "2 0 bf16" "3 0 fp16" "3 2 bf16" "4 2 fp16" "4 3 bf16"; do
  set -- $run
  np=$1 k=$2 z=$3
  hosts=(); [ "$k" -gt 0 ] && hosts=(--hosts-of "$k")
  timeout -k 5 120 mpirun -np $np --oversubscribe "$NNTRAIN" bench allreduce \
    --sizes 4K,100K,1M --iters 3 --chunk 16K --json --compress $z "${hosts[@]}" \
    >"$out/json$np" 2>"$out/err$np"
  rc=$?
  if [ $rc -ne 0 ]; then echo "FAIL: np $np: exit $rc"; cat "$out/err$np"; fail=1; continue; fi
  if python3 - "$out/json$np" $np $k $z <<'PY'
import json, sys
lines = [l for l in open(sys.argv[1]) if l.strip()]
np_, k, z = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
nh = (np_ + k - 1) // k if k else 1
maxl = min(k, np_) if k else np_
assert len(lines) == 3, f"expected 3 JSON lines, got {len(lines)}"
want = [4096, 102400, 1048576]
for l, b in zip(lines, want):
    o = json.loads(l, parse_constant=lambda c: sys.exit("not JSON: " + c))
    for a in ("ring", "hier", "hier_rs", "mpi", "cring"):
        for key in ("_us", "_min_us", "_busbw_gbps"):
            assert a + key in o, f"missing {a + key} in {l}"
        assert o[a + "_us"] > 0, o
        if np_ == 1:
            assert o[a + "_busbw_gbps"] == 0, o
        else:
            bw = 2 * (np_ - 1) / np_ * b / (o[a + "_us"] * 1e3)
            assert abs(bw - o[a + "_busbw_gbps"]) <= 0.002 + 0.01 * bw, (a, bw, o)
    assert o["bytes"] == b, o
    assert o["ranks"] == np_, o
    assert o["hosts"] == nh and o["max_ranks_per_host"] == maxl, o
    assert o["compress"] == z, o
    # relative error of the 16-bit ring: about 2^-9 (bf16) or 2^-12 (fp16) per rounding
    bound = (np_ if np_ > 1 else 0) * (2 ** -8 if z == "bf16" else 2 ** -11)
    assert 0 <= o["cring_rel_err"] <= bound, o
    if np_ > 1:
        assert o["cring_rel_err"] > 0, o
    want = "hierarchical" if nh > 1 and maxl > 1 and b >= 65536 else "ring"
    assert o["auto"] == want, (want, o)
PY
  then echo "ok: np $np hosts of $k, $z: JSON"; else echo "FAIL: np $np hosts of $k JSON:"; cat "$out/json$np"; fail=1; fi
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
check_usage "expected ranks per host >= 1" allreduce --hosts-of 0
check_usage "expected bf16, fp16 or none" allreduce --compress fp8
"$NNTRAIN" bench --help | grep -q "usage: mpirun" || { echo "FAIL: --help"; fail=1; }
exit $fail
