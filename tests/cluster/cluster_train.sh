#!/usr/bin/env bash
# Training across 4 simulated hosts (scripts/cluster.sh, 1 Gbit/s links):
#   (b) an MLP on a Fashion-MNIST subset, 4 hosts x 1 rank and 4 hosts x 2
#       ranks, ends with parameters byte-identical to the same job at the same
#       rank count on one host (plain mpirun, NN_SIM_HOST_RANKS grouping the
#       ranks as the hosts do): the summation order of the ring (1 rank a host)
#       and of the hierarchical all-reduce (2 a host, train.allreduce = "auto")
#       depends only on the rank count, the host grouping and the chunk
#       (docs/allreduce.md), not on where the ranks run or how fast the links are. This needs a fixed
#       run.threads: by default a rank's BLAS threads are the node's cores over
#       its ranks there (1 for 4 ranks on this host, 2 for 1 rank on each
#       simulated host), and OpenBLAS's sums depend on its thread count; that
#       run is checked within float tolerance;
#   (c) SIGUSR1 to mpirun stops the run across the hosts with exit 75 and a
#       checkpoint at the stop step; --resume across the hosts then ends
#       byte-identical to the uninterrupted run (also across the hosts);
#   and after each cluster: nothing left (namespaces, links, processes).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_py numpy

fm_idx train 0 2000 "$T/sub"
"$NNTRAIN" prepare idx "$T/sub-img" "$T/sub-lab" --out "$T/d" --split train --shards 4 >/dev/null ||
  fail "prepare"
job() { # job RUN_DIR
cat <<EOF2
name = "cluster_train"
[data]
train = "$T/d/train-*.h5"
$(mlp_model)
[train]
epochs = 1000
batch_size = 64
seed = 11
[optimizer]
type = "adam"
lr = 0.002
[checkpoint]
every_epochs = 0
[run]
dir = "$1"
progress = false
threads = 1
EOF2
}
S=24   # steps of the compared runs (2000 / 64: 31 steps an epoch)

# (b) one host vs 4 hosts, at 4 and 8 ranks.
cluster_up 4 1gbit
for r in 1 2; do
  np=$((4 * r))
  job "$T/one$np" >"$T/one$np.toml"; job "$T/four$np" >"$T/four$np.toml"
  # on one host, NN_SIM_HOST_RANKS=r groups the ranks as the cluster's hosts do, so
  # train.allreduce = "auto" decides the same (ring at 1 rank a host, hierarchical at 2)
  NN_SIM_HOST_RANKS=$r timeout 300 mpirun --oversubscribe -np "$np" -x NN_SIM_HOST_RANKS \
    "$NNTRAIN" "$T/one$np.toml" --quiet --steps $S \
    --dump-params "$T/p_one$np" >"$T/out" 2>&1 || fail "-np $np on one host: $(cat "$T/out")"
  t0=$SECONDS
  crun "$r" -np "$np" "$NNTRAIN" "$T/four$np.toml" --quiet --steps $S --check-replicas \
    --dump-params "$T/p_four$np" >"$T/out" 2>&1 || fail "4 hosts x $r ranks: $(cat "$T/out")"
  cmp "$T/p_one$np" "$T/p_four$np" || fail "4 hosts x $r ranks: parameters differ from -np $np on one host"
  want=ring; [ "$r" = 2 ] && want=hierarchical
  for d in one four; do
    got=$("$PY" -c 'import json,sys; print([e for e in map(json.loads, open(sys.argv[1])) if e.get("event") == "start"][-1].get("allreduce"))' "$T/$d$np/metrics.jsonl")
    [ "$got" = "$want" ] || fail "$d host(s), -np $np: the run used the $got all-reduce, expected $want"
  done
  echo "ok: $S steps at 4 hosts x $r rank(s) ($((SECONDS - t0)) s, $want all-reduce): parameters byte-identical to -np $np on one host with the same host grouping"
done
# run.threads = 0 (the default): 2 BLAS threads a rank on the simulated hosts
crun 1 -np 4 "$NNTRAIN" "$T/four4.toml" --quiet --steps $S --set run.threads=0 \
  --set run.dir="\"$T/four4t\"" --dump-params "$T/p_four4t" >"$T/out" 2>&1 || fail "run.threads = 0: $(cat "$T/out")"
$PY - "$T/p_one4" "$T/p_four4t" <<'PY' || fail "4 hosts x 1 rank with run.threads = 0 drifted from one host"
import sys, numpy as np
a, b = (np.fromfile(f, np.float32) for f in sys.argv[1:3])
rel = np.abs(a - b).max() / np.abs(a).max()
print("ok: 4 hosts x 1 rank, run.threads = 0 (2 BLAS threads) vs one host: max|diff|/max|p| = %.2g" % rel)
assert a.size == b.size and rel < 1e-4, rel
PY
# and the rank count changes only the rounding (docs/allreduce.md)
$PY - "$T/p_four4" "$T/p_four8" <<'PY' || fail "4 and 8 ranks drifted apart"
import sys, numpy as np
a, b = (np.fromfile(f, np.float32) for f in sys.argv[1:3])
rel = np.abs(a - b).max() / np.abs(a).max()
print("ok: 4 vs 8 ranks across the hosts: max|diff|/max|p| = %.2g (not bit-identical: the sum's order changes)" % rel)
assert a.size == b.size and rel < 1e-3, rel
PY
cluster_down

# (c) SIGUSR1 to mpirun, then resume, across 4 hosts x 2 ranks.
cluster_up 4 1gbit
job "$T/usr1" >"$T/usr1.toml"; job "$T/ref" >"$T/ref.toml"
start_bg "$T/usr1.out" "$T/usr1" 2 -np 8 "$NNTRAIN" "$T/usr1.toml" --quiet --steps 100000
t0=$(date +%s%N)
kill -USR1 "$MPIPID"
rc=0; wait "$MPIPID" || rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 )); MPIPID=
[ "$rc" = 75 ] || fail "SIGUSR1 to mpirun across the hosts: exit $rc, expected 75: $(cat "$T/usr1.out")"
STEP=$($PY -c '
import json, sys
s = [json.loads(l) for l in open(sys.argv[1])]
s = [r for r in s if r.get("event") == "stopped"]
print(s[-1]["step"] if s else "")' "$T/usr1/metrics.jsonl")
[ -n "$STEP" ] || fail "no stopped record: $(cat "$T/usr1.out")"
[ -f "$(printf '%s/usr1/checkpoints/step-%012d.h5' "$T" "$STEP")" ] || fail "no checkpoint at the stop step $STEP"
echo "ok: SIGUSR1 -> mpirun across 4 hosts x 2 ranks: exit 75 after $ms ms, checkpoint at step $STEP"
M=$((STEP + 12))
crun 2 -np 8 "$NNTRAIN" "$T/usr1.toml" --quiet --steps $M --resume --dump-params "$T/p_usr1" \
  >"$T/out" 2>&1 || fail "resume across the hosts: $(cat "$T/out")"
crun 2 -np 8 "$NNTRAIN" "$T/ref.toml" --quiet --steps $M --dump-params "$T/p_ref" \
  >"$T/out" 2>&1 || fail "uninterrupted run across the hosts: $(cat "$T/out")"
cmp "$T/p_ref" "$T/p_usr1" || fail "stopped at $STEP and resumed to $M: differs from the uninterrupted run"
echo "ok: resumed from step $STEP to $M across the hosts: parameters byte-identical to the uninterrupted run"
cluster_down
echo PASS
