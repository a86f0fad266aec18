#!/usr/bin/env bash
# Gradient sync choices in training (train.allreduce, train.grad_compression;
# docs/allreduce.md), on Fashion-MNIST with simulated hosts (NN_SIM_HOST_RANKS):
#   - hierarchical on hosts of 1 rank gives the flat ring's parameters, byte for byte,
#     with the default chunk (the gradients over the ranks: 3 stripes at -np 3) and with
#     train.allreduce_chunk_kib = 256 (one stripe); the chunk changes the bits;
#   - with 256 KiB chunks, hierarchical on hosts of 2 (-np 3: {0,1},{2}; -np 4: {0,1},{2,3}) is repeatable,
#     resumes exactly, and stays within float rounding of the ring's parameters: at -np 3
#     the same bits (the 50890 gradients are one stripe, summed (x0+x1)+x2 either way), at
#     -np 4 different ones ((x0+x1)+(x2+x3) against ((x0+x1)+x2)+x3);
#   - hierarchical_rs (reduce-scatter variant) sums in hierarchical's order on a model of
#     one stripe;
#   - bf16 and fp16 on the wire train to the ring's test accuracy within 2 points;
#   - a bad NN_SIM_HOST_RANKS is one line naming the variable.
set -euo pipefail
: "${NNTRAIN:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # PY, fail, fm_idx, mlp_model
need_py numpy
command -v mpirun >/dev/null || skip "mpirun is not installed"
MPI="timeout 300 mpirun --oversubscribe"

fm_idx train 0 6000 "$T/train"
fm_idx t10k 0 1000 "$T/test"
"$NNTRAIN" prepare idx "$T/train-img" "$T/train-lab" --out "$T/d" --split train --shards 2 >/dev/null
"$NNTRAIN" prepare idx "$T/test-img" "$T/test-lab" --out "$T/d" --split test \
  --stats "$T/d/train-000.h5" >/dev/null
cat >"$T/job.toml" <<EOF2
name = "hier"
[data]
train = "$T/d/train-*.h5"
test = "$T/d/test-*.h5"
$(mlp_model)
[train]
epochs = 2
batch_size = 96
seed = 11
allreduce_chunk_kib = 256
[optimizer]
type = "adam"
lr = 0.002
[checkpoint]
every_epochs = 1
keep = 5
EOF2

# train NAME NP HOSTS ALGO WIRE [ARGS...]: run dir $T/NAME, parameters in $T/p_NAME
train() {
  local name=$1 np=$2 k=$3 algo=$4 z=$5
  shift 5
  NN_SIM_HOST_RANKS=$k $MPI -np "$np" -x NN_SIM_HOST_RANKS "$NNTRAIN" "$T/job.toml" --quiet \
    --set run.dir="\"$T/$name\"" --set train.allreduce="\"$algo\"" \
    --set train.grad_compression="\"$z\"" --dump-params "$T/p_$name" "$@" \
    >"$T/out_$name" 2>&1 || { cat "$T/out_$name"; fail "run $name exited $?"; }
}
acc() { $PY -c 'import json,sys; print([r for r in map(json.loads, open(sys.argv[1])) if "epoch" in r][-1]["test_accuracy"])' "$T/$1/metrics.jsonl"; }

# The default chunk (train.allreduce_chunk_kib = 0): the gradients' share per ring
# member; the start record names it; hierarchical on hosts of 1 is still the ring.
start() { $PY -c 'import json,sys; print([r for r in map(json.loads, open(sys.argv[1])) if r.get("event") == "start"][0].get(sys.argv[2]))' "$T/$1/metrics.jsonl" "$2"; }
train rd 3 1 ring none --set train.allreduce_chunk_kib=0
train hd 3 1 hierarchical none --set train.allreduce_chunk_kib=0
cmp "$T/p_rd" "$T/p_hd" || fail "-np 3, default chunk: hierarchical on hosts of 1 differs from the ring"
want=$($PY -c 'g = -(-50890 // 3); print((g + 15) // 16 * 16 * 4)')
[ "$(start rd allreduce_chunk_bytes)" = "$want" ] && [ "$(start hd allreduce_chunk_bytes)" = "$want" ] ||
  fail "-np 3: start record's allreduce_chunk_bytes $(start rd allreduce_chunk_bytes), want $want"
echo "ok: -np 3, default chunk ($want bytes): hierarchical on hosts of one rank == ring, byte for byte"

for np in 3 4; do
  train r$np $np 1 ring none
  [ "$(start r$np allreduce_chunk_bytes)" = 262144 ] || fail "-np $np: allreduce_chunk_kib = 256 not used"
  [ $np = 3 ] && cmp -s "$T/p_rd" "$T/p_r3" && fail "-np 3: the chunk did not change the summation order"

  train h1_$np $np 1 hierarchical none
  cmp "$T/p_r$np" "$T/p_h1_$np" || fail "-np $np: hierarchical on hosts of 1 differs from the ring"
  echo "ok: -np $np: hierarchical on hosts of one rank == ring, byte for byte"
  train h2_$np $np 2 hierarchical none
  train h2b_$np $np 2 hierarchical none
  # the start record says which all-reduce the run used (train.allreduce as decided)
  [ "$($PY -c 'import json,sys; print([r for r in map(json.loads, open(sys.argv[1])) if r.get("event") == "start"][0].get("allreduce"))' "$T/h2_$np/metrics.jsonl")" = hierarchical ] &&
    [ "$($PY -c 'import json,sys; print([r for r in map(json.loads, open(sys.argv[1])) if r.get("event") == "start"][0].get("allreduce"))' "$T/r$np/metrics.jsonl")" = ring ] ||
    fail "-np $np: the start record does not name the all-reduce used"
  cmp "$T/p_h2_$np" "$T/p_h2b_$np" || fail "-np $np: hierarchical run not repeatable"
  $PY - "$T/p_r$np" "$T/p_h2_$np" $np <<'PY' || fail "-np $np: hierarchical far from the ring"
import sys, numpy as np
a, b = (np.fromfile(f, dtype=np.float32) for f in sys.argv[1:3])
n = int(sys.argv[3])
d = np.abs(a - b).max() / np.abs(a).max()
print("hierarchical vs ring: max |dp| / max |p| = %.3g, %d of %d parameters differ" % (d, (a != b).sum(), a.size))
assert a.size == b.size and d < 1e-3, d
if n == 3:
    assert (a == b).all(), "-np 3, hosts {0,1},{2}: the documented order is the ring's"
else:
    assert (a != b).any(), "-np 4, hosts of 2: the rounding should differ from the ring's"
PY
  echo "ok: -np $np: hierarchical on hosts of 2 repeatable, within rounding of the ring"
  echo "   test accuracy: ring $(acc r$np), hierarchical $(acc h2_$np)"
done

# The reduce-scatter variant: -np 4 on hosts of 2 (P = 2 owners per host): within
# rounding of the ring, and (one stripe: b = 0 for both) the same bits as hierarchical.
train rs4 4 2 hierarchical_rs none
cmp "$T/p_h2_4" "$T/p_rs4" || fail "hierarchical_rs differs from hierarchical on one stripe"
echo "ok: -np 4: hierarchical_rs == hierarchical (the model is one stripe: the same order)"

# Exact resume of a hierarchical run (-np 3, hosts of 2): stop after epoch 1, resume.
train h2s 3 2 hierarchical none --steps 30
train h2s 3 2 hierarchical none --resume
cmp "$T/p_h2_3" "$T/p_h2s" || fail "hierarchical run interrupted at step 30 and resumed differs"
echo "ok: hierarchical run stopped at step 30 and resumed == uninterrupted"

# 16-bit wire formats: accuracy within 2 points of fp32.
train zb 3 2 hierarchical bf16
train zf 3 1 ring fp16
train zr 3 1 ring bf16
for z in zb zf zr; do
  $PY - "$(acc r3)" "$(acc $z)" "$z" <<'PY' || fail "$z: accuracy off"
import sys
a, b = float(sys.argv[1]), float(sys.argv[2])
print("%s: test accuracy %.4f vs fp32 ring %.4f" % (sys.argv[3], b, a))
assert abs(a - b) <= 0.02 and b > 0.7, (a, b)
PY
done
cmp -s "$T/p_r3" "$T/p_zr" && fail "bf16 on the wire gave the fp32 parameters"
echo "ok: bf16/fp16 on the wire train as well as fp32"

# A bad NN_SIM_HOST_RANKS: exit non-zero, one line naming it.
NN_SIM_HOST_RANKS=x $MPI -np 2 -x NN_SIM_HOST_RANKS "$NNTRAIN" "$T/job.toml" --quiet \
  --set run.dir="\"$T/bad\"" >"$T/so" 2>"$T/se" && fail "bad NN_SIM_HOST_RANKS accepted"
grep -q "NN_SIM_HOST_RANKS='x'" "$T/se" || { cat "$T/se"; fail "no message naming NN_SIM_HOST_RANKS"; }
[ "$(grep -c "nntrain" "$T/se")" = 1 ] || { cat "$T/se"; fail "expected one message"; }
echo "ok: bad NN_SIM_HOST_RANKS: $(grep nntrain "$T/se")"
