#!/usr/bin/env bash
# The autoencoder task (run/tasks/autoencoder.c) and `nntrain encode` (cli/encode.c):
#   - a dense autoencoder trains N-invariantly: 60 steps at -np 2 and 3 match -np 1 to 1e-4,
#     replicas identical across ranks (--check-replicas)
#   - stopped mid-epoch (step 23) and resumed to 60, it equals the uninterrupted run bit for
#     bit, at -np 2 and 3
#   - metrics.jsonl reports val_mse / test_mse (= val_loss / test_loss), the loss falls,
#     and the validation MSE ends below 0.6 (zeros would score about 1: standardized data)
#   - its rules: an output without as many values as the input, or a classification loss,
#     is a one-line job error (exit 3) naming the job file; `nntrain eval` reports the MSE
#   - encode writes a shard [N, 16] of the code layer with the data's labels in data order,
#     the same at -np 1, 2 and 3; on regression data, its targets; a conv layer that the
#     model keeps blocked (nChw16c, oneDNN) is written in NCHW: equal to the reference
#     backend's (plain NCHW) to 1e-4
#   - encode's bad input: unknown layer (lists the names, exit 2), data that does not
#     match the model / missing (exit 4), unwritable output (exit 4, no file left)
set -euo pipefail
[ -n "${AE_TRACE:-}" ] && set -x
: "${NNTRAIN:?}"
. "$(dirname "$0")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
S2T="${SHARD2TXT:-$(dirname "$NNTRAIN")/tests/shard2txt}"
[ -x "$S2T" ] || fail "no $S2T (build the shard2txt target)"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
MPI="timeout 300 mpirun --oversubscribe"
fm_idx train 0 1200 "$T/sub"
fm_idx t10k 0 300 "$T/tst"
"$NNTRAIN" prepare idx "$T/sub-img" "$T/sub-lab" --out "$T/fm" --split train --shards 2 >/dev/null
"$NNTRAIN" prepare idx "$T/tst-img" "$T/tst-lab" --out "$T/fm" --split test --shards 1 \
  --stats "$T/fm/train-000.h5" >/dev/null
cat > "$T/ae.toml" <<EOF2
name = "ae"
[data]
train = "$T/fm/train-*.h5"
test = "$T/fm/test-*.h5"
validation_split = 0.1
normalize = true
[model]
[[model.layers]]
type = "dense"
units = 64
activation = "relu"
[[model.layers]]
type = "dense"
name = "code"
units = 16
[[model.layers]]
type = "dense"
units = 784
[train]
task = "autoencoder"
loss = "mse"
epochs = 2
batch_size = 42
seed = 5
[optimizer]
type = "adam"
lr = 0.002
[checkpoint]
every_epochs = 0
EOF2

# max |a - b| / max |a| of two float32 dumps or two shard2txt files, below $3
close() {
  "$PY" - "$@" <<'PYEOF'
import struct, sys
def load(p):
    if p.endswith(".bin"):
        b = open(p, "rb").read()
        return list(struct.unpack("%df" % (len(b) // 4), b))
    return [float(v) for line in open(p).read().split("\n")[1:] for v in line.split()]
a, b = load(sys.argv[1]), load(sys.argv[2])
assert len(a) == len(b) and a, (len(a), len(b))
rel = max(abs(x - y) for x, y in zip(a, b)) / max(abs(x) for x in a)
print("  max rel diff %.2e" % rel)
sys.exit(0 if rel < float(sys.argv[3]) else 1)
PYEOF
}

# --- training: N-invariance, resume ---------------------------------------------------
"$NNTRAIN" "$T/ae.toml" --set "run.dir=\"$T/n1\"" --steps 60 --dump-params "$T/p1.bin" \
  --no-progress --quiet || fail "-np 1"
for np in 2 3; do
  $MPI -np $np "$NNTRAIN" "$T/ae.toml" --set "run.dir=\"$T/full$np\"" --steps 60 --check-replicas \
    --dump-params "$T/p$np.bin" --no-progress --quiet || fail "-np $np"
  close "$T/p1.bin" "$T/p$np.bin" 1e-4 || fail "-np $np differs from -np 1"
  $MPI -np $np "$NNTRAIN" "$T/ae.toml" --set "run.dir=\"$T/part$np\"" --steps 23 --no-progress \
    --quiet || fail "part -np $np"
  $MPI -np $np "$NNTRAIN" "$T/ae.toml" --set "run.dir=\"$T/part$np\"" --steps 60 --resume \
    --dump-params "$T/r$np.bin" --no-progress --quiet || fail "resume -np $np"
  cmp -s "$T/r$np.bin" "$T/p$np.bin" || fail "-np $np: the resumed run differs from the uninterrupted one"
  echo "-np $np: = -np 1 to 1e-4, resume from step 23 bit-exact"
done

# --- figures: a whole run at -np 2 ----------------------------------------------------
$MPI -np 2 "$NNTRAIN" "$T/ae.toml" --set "run.dir=\"$T/run\"" --no-progress --quiet || fail "run"
"$PY" - "$T/run/metrics.jsonl" <<'PYEOF' || fail "metrics.jsonl: reconstruction figures"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if '"epoch":' in l and '"val_loss"' in l]
assert len(recs) == 2, recs
for r in recs:
    assert r["val_mse"] > 0 and abs(r["val_mse"] - r["val_loss"]) < 1e-9 * r["val_loss"], r
    assert abs(r["test_mse"] - r["test_loss"]) < 1e-9 * r["test_loss"], r
assert recs[1]["loss"] < recs[0]["loss"] and recs[1]["val_mse"] < recs[0]["val_mse"], recs
# standardized pixels: an output of zeros has an MSE of about 1; a model that learnt
# anything but its input (e.g. the labels) stays near it
assert recs[1]["val_mse"] < 0.6, recs[1]
print("  val_mse %.4f -> %.4f, test_mse %.4f" % (recs[0]["val_mse"], recs[1]["val_mse"], recs[1]["test_mse"]))
PYEOF
CK="$T/run/best.h5"
"$NNTRAIN" eval "$CK" "$T/fm/test-*.h5" >"$T/eval" || fail "eval: $(cat "$T/eval")"
grep -qi "mse" "$T/eval" || fail "eval of an autoencoder reports its MSE: $(cat "$T/eval")"

set +e # expect_fail runs commands that fail
# --- the kind's rules --------------------------------------------------------------------
sed 's/units = 784/units = 10/' "$T/ae.toml" >"$T/short.toml"
expect_fail 3 "as many values as the input" "$NNTRAIN" check "$T/short.toml"
grep -qF "$T/short.toml" "$T/se" || fail "the output rule names the job file: $(cat "$T/se")"
expect_fail 3 'train.loss must be one of "mse"' "$NNTRAIN" "$T/ae.toml" \
  --set 'train.loss="cross_entropy"' --set "run.dir=\"$T/bad\""

set -e
# --- encode ------------------------------------------------------------------------------
for np in 1 2 3; do
  $MPI -np $np "$NNTRAIN" encode "$CK" "$T/fm/train-*.h5" --layer code --out "$T/codes$np.h5" \
    --batch 17 >/dev/null || fail "encode -np $np"
  "$S2T" "$T/codes$np.h5" >"$T/codes$np.txt" || fail "codes$np.h5 does not read as a shard"
done
[ "$(head -1 "$T/codes1.txt")" = "1200 16 10 0" ] || fail "codes: $(head -1 "$T/codes1.txt"), want 1200 x 16, 10 classes"
"$S2T" "$T/fm/train-*.h5" | cut -d' ' -f1 >"$T/labels_in"
cut -d' ' -f1 "$T/codes1.txt" | cmp -s - "$T/labels_in" || fail "encode's labels are not the data's, in order"
close "$T/codes1.txt" "$T/codes2.txt" 1e-5 || fail "encode -np 2 differs from -np 1"
close "$T/codes1.txt" "$T/codes3.txt" 1e-5 || fail "encode -np 3 differs from -np 1"
"$PY" - "$T/codes1.txt" <<'PYEOF' || fail "the codes are constant"
import sys
rows = [l.split()[1:] for l in open(sys.argv[1]).read().split("\n")[1:] if l]
assert len(set(tuple(r) for r in rows)) > 1000, "codes do not depend on the sample"
PYEOF
echo "encode: [1200, 16] codes with the data's labels, the same at -np 1, 2, 3"

# regression data: the targets play no part in training and are copied next to the codes
"$PY" - "$T/reg.csv" <<'PYEOF'
import random, sys
random.seed(1)
with open(sys.argv[1], "w") as f:
    f.write("a,b,c,d,y\n")
    for i in range(200):
        a, b, c = [random.uniform(-1, 1) for _ in range(3)]
        f.write("%f,%f,%f,%f,%f\n" % (a, b, c, a + b, a * b))
PYEOF
"$NNTRAIN" prepare csv "$T/reg.csv" --label y --regression --out "$T/reg" >/dev/null
"$PY" - "$T/ae.toml" "$T/reg" >"$T/reg.toml" <<'PYEOF'
import sys
s = open(sys.argv[1]).read().replace("units = 64", "units = 8").replace("units = 16", "units = 3")
s = s.replace("units = 784", "units = 4").replace("batch_size = 42", "batch_size = 20")
s = s.replace('[data]', '[data]\ntrain = "%s/train-*.h5"' % sys.argv[2], 1)
print("\n".join(l for l in s.split("\n") if not l.startswith(("train = \"/", "test = "))
                 or sys.argv[2] in l))
PYEOF
"$NNTRAIN" "$T/reg.toml" --set "run.dir=\"$T/reg_run\"" --no-progress --quiet || fail "regression-data autoencoder"
"$NNTRAIN" encode "$T/reg_run/best.h5" "$T/reg/train-*.h5" --layer code --out "$T/regc.h5" >/dev/null ||
  fail "encode on regression data"
"$S2T" "$T/regc.h5" >"$T/regc.txt" && "$S2T" "$T/reg/train-*.h5" >"$T/reg.txt"
[ "$(head -1 "$T/regc.txt")" = "200 3 0 1" ] || fail "regression codes: $(head -1 "$T/regc.txt")"
cmp -s <(cut -d' ' -f1 "$T/regc.txt") <(cut -d' ' -f1 "$T/reg.txt") ||
  fail "encode's targets are not the data's, in order"
echo "encode: regression data's targets copied in order"

# a conv layer of 16 channels, blocked by the layout pass with oneDNN: written NCHW
# (conv -> relu -> maxpool -> flatten: with oneDNN, conv1 and its relu stay blocked)
"$PY" - "$T/ae.toml" >"$T/conv.toml" <<'PYEOF'
import sys
s = open(sys.argv[1]).read()
s = s.replace("""type = "dense"
units = 64
activation = "relu"
""", """type = "conv2d"
name = "conv1"
filters = 16
kernel_size = [3, 3]
padding = "same"
activation = "relu"
[[model.layers]]
type = "maxpool"
pool_size = [2, 2]
[[model.layers]]
type = "flatten"
""", 1)
print(s, end="")
PYEOF
"$NNTRAIN" "$T/conv.toml" --set "run.dir=\"$T/conv\"" --steps 10 --no-progress --quiet ||
  fail "conv autoencoder"
CC=$(ls "$T"/conv/checkpoints/*.h5 | tail -1)
if NN_CONV_BACKEND=dnnl "$NNTRAIN" check "$T/conv.toml" >/dev/null 2>&1; then
  export NN_CONV_BACKEND=dnnl # blocked outputs need oneDNN's convolution
else
  echo "NOTE: this build has no oneDNN: no layer is blocked, the NCHW check below is vacuous"
fi
"$NNTRAIN" encode "$CC" "$T/fm/test-*.h5" --layer conv1 --out "$T/c_dflt.h5" >/dev/null || fail "encode conv1"
unset NN_CONV_BACKEND
NN_CONV_BACKEND=reference NN_BLOCKED=0 "$NNTRAIN" encode "$CC" "$T/fm/test-*.h5" --layer conv1 \
  --out "$T/c_ref.h5" >/dev/null || fail "encode conv1 (reference)"
"$S2T" "$T/c_dflt.h5" >"$T/c_dflt.txt" && "$S2T" "$T/c_ref.h5" >"$T/c_ref.txt"
[ "$(head -1 "$T/c_dflt.txt")" = "300 12544 10 0" ] || fail "conv1 codes: $(head -1 "$T/c_dflt.txt")"
close "$T/c_ref.txt" "$T/c_dflt.txt" 1e-4 || fail "a blocked conv layer's outputs are not NCHW"
echo "encode: a blocked 16-channel conv layer is written NCHW (= the reference backend)"

# bad input: one line, the README's exit codes, no file left behind
set +e
expect_fail 2 "its layers are dense0, dense0_relu, code, dense2" \
  "$NNTRAIN" encode "$CK" "$T/fm/test-*.h5" --layer nope --out "$T/x.h5"
expect_fail 4 "no files match" "$NNTRAIN" encode "$CK" "$T/none-*.h5" --layer code --out "$T/x.h5"
expect_fail 4 "$T/nodir/x.h5" "$NNTRAIN" encode "$CK" "$T/fm/test-*.h5" --layer code \
  --out "$T/nodir/x.h5"
expect_fail 2 "needs --layer" "$NNTRAIN" encode "$CK" "$T/fm/test-*.h5" --out "$T/x.h5"
[ ! -e "$T/x.h5" ] && [ ! -e "$T/x.h5.tmp" ] || fail "a failed encode left a file"
echo "e2e_autoencoder: ok"
