#!/usr/bin/env bash
# train.precision = "bf16" (docs/layers.md#bf16) in real training: the classic convnet
# (jobs/fashion_mnist_cnn.toml's layers, ReLU and max-pool) on 9,600 Fashion-MNIST images,
# 3 epochs of 100 steps of 96, in fp32 at -np 2 and in bf16 at -np 2 and -np 3:
# - the bf16 runs keep replicas identical after every step (--check-replicas), their
#   start record says "precision": "bf16" and "conv_bf16_layers": 2 (the first
#   convolution, 1 input channel, stays f32);
# - their loss falls like fp32's: every epoch's mean training loss within LOSS_MARGIN of
#   the fp32 run's, the last epoch's below 60% of the first's, and the test accuracy on
#   2,000 held-out images within ACC_MARGIN points of fp32's;
# - resuming the fp32 run's checkpoint in bf16 (precision is a run setting) continues
#   from its step;
# - refusals, one line naming train.precision, exit 3, once at -np 2: a CPU without bf16
#   (ONEDNN_MAX_CPU_ISA=AVX512_CORE hides it from oneDNN), NN_CONV_BACKEND=reference.
# On a CPU or a build without bf16 only the refusal is checked, then the test skips (77).
set -euo pipefail
: "${NNTRAIN:?}" "${NN_SOURCE_DIR:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # PY, fail, skip, expect_fail, fm_idx
MPI="timeout 600 mpirun --oversubscribe"
LOSS_MARGIN=0.03 # per-epoch mean loss, absolute (fp32's falls from ~0.9 to ~0.4)
ACC_MARGIN=1.5   # test accuracy, points (2,000 images: one image is 0.05 points)

fm_idx train 0 9600 "$T/tr"
fm_idx t10k 0 2000 "$T/te"
"$NNTRAIN" prepare idx "$T/tr-img" "$T/tr-lab" --out "$T/fm" --split train --shards 2 >/dev/null
"$NNTRAIN" prepare idx "$T/te-img" "$T/te-lab" --out "$T/fm" --split test --shards 1 --stats "$T/fm/train-000.h5" >/dev/null

sed -n '/^\[model\]/,/^\[train\]/p' "$NN_SOURCE_DIR/jobs/fashion_mnist_cnn.toml" | sed '$d' \
  >"$T/layers.toml"
{
  cat <<EOF2
name = "e2e_bf16"
[data]
train = "$T/fm/train-*.h5"
test = "$T/fm/test-*.h5"
EOF2
  cat "$T/layers.toml"
  cat <<EOF2
[train]
epochs = 3
batch_size = 96
seed = 5
[optimizer]
type = "adam"
lr = 0.001
[run]
threads = 1
EOF2
} >"$T/cnn.toml"

# --- refusals: exit 3, one line naming the key (at -np 2: once) ------------------------
set +e
ONEDNN_MAX_CPU_ISA=AVX512_CORE expect_fail 3 'train.precision = "bf16" cannot run here' \
  "$NNTRAIN" "$T/cnn.toml" --steps 1 --quiet --set train.precision=bf16 --set run.dir="\"$T/no1\""
ONEDNN_MAX_CPU_ISA=AVX512_CORE $MPI -np 2 -x ONEDNN_MAX_CPU_ISA "$NNTRAIN" "$T/cnn.toml" \
  --steps 1 --quiet --set train.precision=bf16 --set run.dir="\"$T/no2\"" >"$T/so" 2>"$T/se"
rc=$?
set -e
[ "$rc" = 3 ] || fail "-np 2 without bf16 exited $rc, expected 3: $(cat "$T/se")"
[ "$(grep -c 'train.precision = "bf16" cannot run here' "$T/se")" = 1 ] ||
  fail "-np 2 without bf16: expected the message once: $(cat "$T/se")"
set +e
NN_CONV_BACKEND=reference expect_fail 3 "NN_CONV_BACKEND=reference computes in f32 only" \
  "$NNTRAIN" "$T/cnn.toml" --steps 1 --quiet --set train.precision=bf16 --set run.dir="\"$T/no3\""
"$NNTRAIN" "$T/cnn.toml" --steps 1 --quiet --set train.precision=bf16 \
  --set run.dir="\"$T/probe\"" >/dev/null 2>"$T/probe.err"
rc=$?
set -e
if [ "$rc" = 3 ]; then
  grep -qE "no bf16 instructions|no oneDNN" "$T/probe.err" && skip "$(cat "$T/probe.err")"
fi
[ "$rc" = 0 ] || fail "a bf16 probe run exited $rc: $(cat "$T/probe.err")"

# --- training: fp32 at 2 ranks, bf16 at 2 and 3 ----------------------------------------
run() { # precision ranks [extra options]
  local p=$1 np=$2
  shift 2
  $MPI -np "$np" "$NNTRAIN" "$T/cnn.toml" --quiet --set train.precision="$p" \
    --set run.dir="\"$T/r-$p-$np\"" "$@" || fail "$p at -np $np"
}
run fp32 2
run bf16 2 --check-replicas
run bf16 3 --check-replicas
for np in 2 3; do
  grep -q '"precision": "bf16", "conv_bf16_layers": 2' "$T/r-bf16-$np/metrics.jsonl" ||
    fail "-np $np: start record: $(head -1 "$T/r-bf16-$np/metrics.jsonl")"
done
grep -q '"precision": "fp32", "conv_bf16_layers": 0' "$T/r-fp32-2/metrics.jsonl" ||
  fail "fp32 start record: $(head -1 "$T/r-fp32-2/metrics.jsonl")"

# --- resume the fp32 run in bf16 for one more epoch ------------------------------------
cp -r "$T/r-fp32-2" "$T/r-resume"
$MPI -np 2 "$NNTRAIN" "$T/cnn.toml" --quiet --resume --set train.precision=bf16 \
  --set train.epochs=4 --set run.dir="\"$T/r-resume\"" || fail "fp32 run resumed in bf16"

$PY - "$T" "$LOSS_MARGIN" "$ACC_MARGIN" <<'PY' || fail "bf16 did not train like fp32"
import json, sys
t, loss_margin, acc_margin = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
def recs(run):
    return [json.loads(l) for l in open("%s/%s/metrics.jsonl" % (t, run))]
def epoch_recs(run): # an epoch's record has "epoch" and no "event"
    return [r for r in recs(run) if "epoch" in r and "event" not in r]
def epochs(run):
    return [r["loss"] for r in epoch_recs(run)]
def test_acc(run):
    return 100.0 * epoch_recs(run)[-1]["test_accuracy"]
ref = epochs("r-fp32-2")
assert len(ref) == 3, ref
for run in ("r-bf16-2", "r-bf16-3"):
    got = epochs(run)
    assert len(got) == 3, (run, got)
    d = max(abs(a - b) for a, b in zip(got, ref))
    print("%s: epoch losses %s (fp32 %s): max |diff| %.4f (margin %.2f)" % (
        run, " ".join("%.4f" % x for x in got), " ".join("%.4f" % x for x in ref), d, loss_margin))
    assert d <= loss_margin, d
    assert got[-1] < 0.6 * got[0], got
    a, b = test_acc(run), test_acc("r-fp32-2")
    print("%s: test accuracy %.2f%% (fp32 %.2f%%, margin %.1f points)" % (run, a, b, acc_margin))
    assert abs(a - b) <= acc_margin, (a, b)
rs = recs("r-resume")
starts = [r for r in rs if r.get("event") == "start"]
assert starts[-1]["precision"] == "bf16" and starts[-1]["step"] == 300, starts[-1]
e = epochs("r-resume")
assert len(e) == 4 and e[:3] == ref, (e, ref)
print("fp32 -> bf16 resume: epoch 4 loss %.4f (epoch 3, fp32: %.4f)" % (e[-1], e[-2]))
assert e[-1] < e[-2], e
PY
echo "e2e_bf16: ok"
