#!/usr/bin/env bash
# conv2d's backends in real training (docs/layers.md, "Convolution backends"): a small
# convnet (tanh and average pooling: smooth, so float rounding cannot flip a ReLU or a
# max-pool choice and grow into a real difference, as it does within 20 steps with ReLU
# and max-pool) trained 45 steps (past an epoch's partial last batch, so slices of several
# sizes) at 1, 2 and 3 ranks with NN_CONV_BACKEND=reference and =dnnl ends with the same
# parameters to float rounding; the oneDNN runs keep replicas identical every step
# (--check-replicas) and their start record says "conv_backend": "dnnl_blocked"; a bad
# NN_CONV_BACKEND fails once, with exit 2. Skipped (77) in a build without oneDNN.
set -euo pipefail
: "${NNTRAIN:?}" "${NN_SOURCE_DIR:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # PY, fail, skip, expect_fail, fm_idx
need_py numpy
MPI="timeout 300 mpirun --oversubscribe"

# --- 4,000 Fashion-MNIST images: 42 steps of 96 an epoch, the last one 64 -----------
fm_idx train 0 4000 "$T/sub"
"$NNTRAIN" prepare idx "$T/sub-img" "$T/sub-lab" --out "$T/fm" --split train --shards 2 >/dev/null

cat > "$T/cnn.toml" <<EOF2
name = "e2e_conv_backends"
[data]
train = "$T/fm/train-*.h5"
[model]
[[model.layers]]
type = "conv2d"
filters = 8
kernel_size = [3, 3]
activation = "tanh"
[[model.layers]]
type = "avgpool"
pool_size = [2, 2]
[[model.layers]]
type = "conv2d"
filters = 16
kernel_size = [3, 3]
stride = [2, 2]
padding = "same"
groups = 2
activation = "tanh"
[[model.layers]]
type = "conv2d"
filters = 16
kernel_size = [1, 1]
[[model.layers]]
type = "flatten"
[[model.layers]]
type = "dense"
units = 10
[train]
epochs = 2
batch_size = 96
seed = 3
[optimizer]
type = "sgd"
lr = 0.05
momentum = 0.9
[run]
dir = "$T/run"
EOF2

# a build without oneDNN refuses NN_CONV_BACKEND=dnnl (exit 2): nothing to compare
if ! NN_CONV_BACKEND=dnnl "$NNTRAIN" check "$T/cnn.toml" >/dev/null 2>"$T/chk"; then
  grep -q "this build has no oneDNN" "$T/chk" && skip "this build has no oneDNN (NN_DNNL=OFF)"
  fail "nntrain check with NN_CONV_BACKEND=dnnl: $(cat "$T/chk")"
fi

run() { # backend ranks
  local extra=()
  [ "$2" -gt 1 ] && extra=(--check-replicas)
  NN_CONV_BACKEND=$1 $MPI -np "$2" "$NNTRAIN" "$T/cnn.toml" --steps 45 --quiet \
    --set run.threads=1 --set run.dir="\"$T/r-$1-$2\"" --dump-params "$T/p-$1-$2" "${extra[@]}" \
    || fail "$1 at -np $2"
}
for np in 1 2 3; do
  run reference "$np"
  run dnnl "$np"
  grep -q '"conv_backend": "dnnl_blocked"' "$T/r-dnnl-$np/metrics.jsonl" ||
    fail "-np $np: no conv_backend dnnl_blocked in the start record: $(head -1 "$T/r-dnnl-$np/metrics.jsonl")"
  grep -q '"conv_backend": "reference"' "$T/r-reference-$np/metrics.jsonl" ||
    fail "-np $np: no conv_backend reference in the start record"
done
$PY - "$T" <<'PY' || fail "reference and oneDNN parameters differ"
import sys, numpy as np
t = sys.argv[1]
p = {(b, n): np.fromfile("%s/p-%s-%d" % (t, b, n), dtype=np.float32)
     for b in ("reference", "dnnl") for n in (1, 2, 3)}
size = 8*1*9 + 8 + 16*4*9 + 16 + 16*16 + 16 + 16*7*7*10 + 10
for k, v in p.items():
    assert v.size == size, (k, v.size, size)
ref = p[("reference", 1)]
scale = np.abs(ref).max()
assert scale > 0
for n in (1, 2, 3):
    rel = np.abs(p[("dnnl", n)] - p[("reference", n)]).max() / scale
    print("-np %d, 45 steps: oneDNN vs reference max|diff|/max|p| = %.3g" % (n, rel))
    assert rel < 1e-4, rel
    rel = np.abs(p[("dnnl", n)] - ref).max() / scale
    print("-np %d oneDNN vs -np 1 reference: %.3g" % (n, rel))
    assert rel < 1e-4, rel
PY

# --- a bad NN_CONV_BACKEND: one line, exit 2, naming the variable (1 and 2 ranks) ------
set +e
NN_CONV_BACKEND=mkl expect_fail 2 "NN_CONV_BACKEND='mkl' is not one of" \
  "$NNTRAIN" "$T/cnn.toml" --steps 1 --quiet --set run.dir="\"$T/bad\""
NN_CONV_BACKEND=mkl $MPI -np 2 "$NNTRAIN" "$T/cnn.toml" --steps 1 --quiet \
  --set run.dir="\"$T/bad2\"" >"$T/so" 2>"$T/se"
rc=$?
set -e
[ "$rc" = 2 ] || fail "-np 2 with NN_CONV_BACKEND=mkl exited $rc, expected 2: $(cat "$T/se")"
[ "$(grep -c "NN_CONV_BACKEND='mkl' is not one of" "$T/se")" = 1 ] ||
  fail "-np 2 with NN_CONV_BACKEND=mkl: expected the message once: $(cat "$T/se")"
echo "e2e_conv_backends: ok"
