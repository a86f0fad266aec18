#!/usr/bin/env bash
# Fine-tuning end to end (docs/finetuning.md): prepare fashion-mnist --classes
# / --limit keep and relabel the right samples; a job with a frozen layer
# (trainable = false) and [init] from a real checkpoint trains at -np 2 and
# -np 3 with the frozen parameters bit-identical to the source's and no
# optimizer state for them; [init] names the copied and the new layers;
# resuming ignores [init] (its file may be gone) and is exact; a shape
# mismatch fails with exit code 5 naming the dataset and both shapes; a file
# written by h5py from NumPy arrays in the /params layout loads, float64 is
# refused; the shipped pretrain and finetune jobs run together for a few steps
# and `check` marks the frozen layers. All but the prepare checks need
# python3-h5py and NumPy (exit 77, reported as skipped, without them).
set -uo pipefail   # no -e: expect_fail needs the failing status; checks use || fail
: "${NNTRAIN:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # PY, fail, expect_fail
MPI="timeout 300 mpirun --oversubscribe"

# ---- prepare: --classes and --limit ---------------------------------------------
"$NNTRAIN" prepare fashion-mnist --out "$T/a" --classes 0,1,2,3,4 --limit 600 --shards 2 >/dev/null ||
  fail "prepare --classes 0,1,2,3,4 --limit 600 failed"
"$NNTRAIN" prepare fashion-mnist --out "$T/b" --classes 9,5 --limit 300 --shards 2 >/dev/null ||
  fail "prepare --classes 9,5 --limit 300 failed"
expect_fail 2 "--classes" "$NNTRAIN" prepare fashion-mnist --out "$T/x" --classes 5,5
expect_fail 2 "--classes" "$NNTRAIN" prepare fashion-mnist --out "$T/x" --classes 3
expect_fail 2 "--classes" "$NNTRAIN" prepare fashion-mnist --out "$T/x" --classes 1,10
expect_fail 2 "--limit" "$NNTRAIN" prepare fashion-mnist --out "$T/x" --limit 0
for f in "$T/b/train-000.h5" "$T/b/train-001.h5"; do   # without h5py: counts and classes
  "$NNTRAIN" inspect "$f" >"$T/insp" || fail "inspect $f"
  grep -Eq "^samples +150$" "$T/insp" && grep -Eq "^classes +2$" "$T/insp" ||
    fail "$f: expected 150 samples of 2 classes: $(cat "$T/insp")"
done
"$PY" -c "import h5py, numpy" 2>/dev/null || { echo "SKIP: python3-h5py or NumPy missing"; exit 77; }
"$PY" - "$T/b" <<'PYEOF' || fail "prepare --classes 9,5 --limit 300 kept the wrong samples"
import glob, gzip, sys, h5py, numpy as np
out = sys.argv[1]
src = "/usr/share/datasets/fashion-mnist/"
def idx(kind):
    img = np.frombuffer(gzip.open(src + kind + "-images-idx3-ubyte.gz").read()[16:], np.uint8)
    lab = np.frombuffer(gzip.open(src + kind + "-labels-idx1-ubyte.gz").read()[8:], np.uint8)
    return img.reshape(-1, 1, 28, 28), lab
def load(split):
    xs, ys = [], []
    for p in sorted(glob.glob(out + "/" + split + "-*.h5")):
        with h5py.File(p, "r") as f:
            xs.append(f["features"][...]); ys.append(f["labels"][...])
    return np.concatenate(xs), np.concatenate(ys)
for kind, split, limit in (("train", "train", 300), ("t10k", "test", None)):
    img, lab = idx(kind)
    keep = np.flatnonzero((lab == 9) | (lab == 5))[:limit]
    want = np.where(lab[keep] == 9, 0, 1)
    x, y = load(split)
    assert len(y) == len(keep), (split, len(y), len(keep))
    assert (y == want).all(), split
    assert (x == img[keep]).all(), split
PYEOF

# ---- pretrain: body + head_a on classes 0-4 ------------------------------------------
job() { # job NAME DATA RUN_DIR BODY_TRAINABLE BODY_UNITS INIT_FROM
cat <<EOF
name = "$1"
[data]
train = "$2/train-*.h5"
test = "$2/test-*.h5"
normalize = false
[model]
[[model.layers]]
name = "body"
type = "dense"
units = $5
activation = "relu"
trainable = $4
EOF
if [ "$1" = pre ]; then
cat <<EOF
[[model.layers]]
name = "head_a"
type = "dense"
units = 5
EOF
else
cat <<EOF
[[model.layers]]
name = "mid"
type = "dense"
units = 16
activation = "relu"
[[model.layers]]
name = "head_b"
type = "dense"
units = 2
EOF
fi
cat <<EOF
[train]
epochs = 2
batch_size = 60
seed = 3
[optimizer]
type = "adam"
lr = 0.003
[run]
dir = "$3"
[init]
from = "$6"
EOF
}
job pre "$T/a" "$T/pre" true 32 "" >"$T/pre.toml"
$MPI -np 2 "$NNTRAIN" "$T/pre.toml" >"$T/pre.out" 2>&1 || fail "pretraining failed: $(cat "$T/pre.out")"
SRCK=$(ls "$T/pre/checkpoints/"step-*.h5 | tail -1)
[ -n "$SRCK" ] || fail "pretraining wrote no checkpoint"

# ---- fine-tune at -np 2 and -np 3: body frozen, mid and head_b new ----------------------
for np in 2 3; do
  job ft "$T/b" "$T/ft$np" false 32 "$SRCK" >"$T/ft.toml"
  $MPI -np $np "$NNTRAIN" "$T/ft.toml" --dump-params "$T/ft$np.bin" >"$T/ft$np.out" 2>&1 ||
    fail "fine-tuning at -np $np failed: $(cat "$T/ft$np.out")"
  grep -qF "[init] from $SRCK: 2 tensors of 1 layers copied (body); new: mid, head_b" "$T/ft$np.out" ||
    fail "-np $np: no [init] line naming the copied and new layers: $(cat "$T/ft$np.out")"
  grep -q "test accuracy" "$T/ft$np.out" || fail "-np $np: no test accuracy: $(cat "$T/ft$np.out")"
  "$PY" - "$SRCK" "$(ls "$T/ft$np/checkpoints/"step-*.h5 | tail -1)" <<'PYEOF' ||
import sys, h5py, numpy as np
src = h5py.File(sys.argv[1], "r")["replicas/model"]
dst = h5py.File(sys.argv[2], "r")["replicas/model"]
# checkpoint format 2: frozen tensors sit past ntrainable and have no slots
total = sum(d.size for l in dst["params"].values() for d in l.values())
frozen = sum(d.size for d in dst["params/body"].values())
assert int(dst.attrs["ntrainable"]) == total - frozen, (int(dst.attrs["ntrainable"]), total, frozen)
for n in ("weight", "bias"):
    a, b = src["params/body/" + n][...], dst["params/body/" + n][...]
    assert a.dtype == np.float32 and np.array_equal(a, b), "body/" + n + " changed"
    for slot in dst.attrs["slots"]:
        slot = slot.decode() if isinstance(slot, bytes) else slot
        assert "body" not in dst["optimizer/" + slot], "frozen body has optimizer slot " + slot
        t = dst["optimizer/%s/head_b/%s" % (slot, n)][...]
        assert t.any(), "optimizer slot %s of head_b/%s is empty" % (slot, n)
# the trained layers moved away from their initialization
assert dst["params/head_b/weight"][...].any()
PYEOF
    fail "-np $np: the frozen layer changed or has optimizer state"
done

# ---- resume ignores [init] and is exact --------------------------------------------
job ft "$T/b" "$T/rs" false 32 "$T/gone.h5" >"$T/rs.toml"
cp "$SRCK" "$T/gone.h5" || fail "cp"
$MPI -np 2 "$NNTRAIN" "$T/rs.toml" --steps 7 >"$T/rs1.out" 2>&1 || fail "interrupted run failed: $(cat "$T/rs1.out")"
rm "$T/gone.h5"
$MPI -np 2 "$NNTRAIN" "$T/rs.toml" --resume --dump-params "$T/rs.bin" >"$T/rs2.out" 2>&1 ||
  fail "resume with the [init] file gone failed: $(cat "$T/rs2.out")"
grep -q "\[init\]" "$T/rs2.out" && fail "resume applied [init]: $(cat "$T/rs2.out")"
cmp -s "$T/rs.bin" "$T/ft2.bin" || fail "resumed fine-tuning differs from the uninterrupted run"

# ---- errors: shape mismatch, float64 --------------------------------------------------
job ft "$T/b" "$T/bad" false 16 "$SRCK" >"$T/bad.toml"
MSG="/params/body/weight: shape [32, 784], expected [16, 784] (from the model"
expect_fail 5 "$MSG" "$NNTRAIN" "$T/bad.toml"
grep -qF "nntrain: $SRCK: " "$T/se" || fail "the shape error does not name the file: $(cat "$T/se")"
$MPI -np 2 "$NNTRAIN" "$T/bad.toml" >"$T/so" 2>"$T/se"
rc=$?
[ $rc = 5 ] || fail "-np 2 shape mismatch exited $rc, expected 5: $(cat "$T/se")"
[ "$(grep -c "^nntrain: " "$T/se")" = 1 ] && grep -qF "$MSG" "$T/se" ||
  fail "-np 2 shape mismatch: expected the message once (rank 0): $(cat "$T/se")"

# ---- a file written by h5py (e.g. from a PyTorch state_dict) ----------------------------
"$PY" - "$T/np.h5" "$T/np64.h5" <<'PYEOF'
import sys, h5py, numpy as np
rng = np.random.default_rng(0)
w = (rng.standard_normal((32, 784)) * 0.05).astype(np.float32)
b = rng.standard_normal(32).astype(np.float32)
with h5py.File(sys.argv[1], "w") as f:
    f["params/body/weight"] = w
    f["params/body/bias"] = b
    f["params/body/num_batches_tracked"] = np.int64(0)   # no such tensor in the model: ignored
    f["params/old_head/weight"] = np.zeros((5, 32), np.float32)
np.save(sys.argv[1] + ".npy", np.concatenate([w.ravel(), b]))
with h5py.File(sys.argv[2], "w") as f:
    f["params/body/weight"] = w.astype(np.float64)
    f["params/body/bias"] = b
PYEOF
job ft "$T/b" "$T/np" false 32 "$T/np.h5" >"$T/np.toml"
$MPI -np 2 "$NNTRAIN" "$T/np.toml" --steps 3 --dump-params "$T/np.bin" >"$T/np.out" 2>&1 ||
  fail "fine-tuning from an h5py file failed: $(cat "$T/np.out")"
"$PY" - "$T/np.bin" "$T/np.h5.npy" <<'PYEOF' || fail "the frozen body is not the h5py file's values"
import sys, numpy as np
dump, want = np.fromfile(sys.argv[1], np.float32), np.load(sys.argv[2])
# the arena: trainable layers (mid, head_b) first, then the frozen body
assert len(dump) == 32 * 784 + 32 + 16 * 32 + 16 + 2 * 16 + 2, len(dump)
assert np.array_equal(dump[-len(want):], want)
PYEOF
job ft "$T/b" "$T/np64" false 32 "$T/np64.h5" >"$T/np64.toml"
expect_fail 5 "/params/body/weight: wrong element type, expected float32" "$NNTRAIN" "$T/np64.toml"

# ---- the shipped example jobs work together (a few steps each) --------------------------
"$NNTRAIN" prepare fashion-mnist --out "$T/c" --classes 5,6,7,8,9 --limit 200 --shards 2 >/dev/null ||
  fail "prepare --classes 5,6,7,8,9 --limit 200 failed"
J="$NN_SOURCE_DIR/jobs"
$MPI -np 2 "$NNTRAIN" "$J/fashion_mnist_pretrain.toml" --quiet --steps 4 \
  --set data.train="\"$T/a/train-*.h5\"" --set data.test="\"$T/a/test-*.h5\"" \
  --set run.dir="\"$T/expre\"" >"$T/ex1.out" 2>&1 || fail "pretrain job: $(cat "$T/ex1.out")"
EXK=$(ls "$T/expre/checkpoints/"step-*.h5 | tail -1)
$MPI -np 2 "$NNTRAIN" "$J/fashion_mnist_finetune.toml" --steps 4 --no-progress \
  --set data.train="\"$T/c/train-*.h5\"" --set data.test="\"$T/c/test-*.h5\"" \
  --set init.from="\"$EXK\"" --set run.dir="\"$T/exft\"" >"$T/ex2.out" 2>&1 ||
  fail "finetune job: $(cat "$T/ex2.out")"
grep -qF "8 tensors of 4 layers copied (conv1, conv2, conv3, fc1); new: head_5to9" "$T/ex2.out" ||
  fail "finetune job: unexpected [init] line: $(cat "$T/ex2.out")"
"$NNTRAIN" check "$J/fashion_mnist_finetune.toml" --set data.train="\"$T/c/train-*.h5\"" \
  --set data.test="\"$T/c/test-*.h5\"" >"$T/ex3.out" 2>&1 || fail "check finetune job: $(cat "$T/ex3.out")"
[ "$(grep -c " (frozen)$" "$T/ex3.out")" = 3 ] || fail "check does not mark the 3 frozen convolutions: $(cat "$T/ex3.out")"
echo "e2e_finetune: ok"
