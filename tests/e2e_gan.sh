#!/usr/bin/env bash
# The GAN task (run/tasks/gan.c, docs/tasks.md#gan) on a small Fashion-MNIST subset:
#   - the discriminator learns (its training accuracy beats chance in epoch 1) while
#     the generator trains (its parameters move), at -np 1, 2 and 3 with replicas
#     identical across ranks (--check-replicas); each epoch leaves a PNG of the
#     generator's images for fixed noise in the run directory;
#   - N-invariance: the parameters after 60 steps agree at -np 1, 2 and 3 (to 1e-4);
#   - an interrupted run resumes bit-exactly, both replicas and both optimizers, at
#     -np 2 and 3; train.gan_d_steps = 2 runs a generator step every second batch;
#   - `nntrain sample`: a PNG grid, the same for the same seed, another for
#     another seed; --score with a small classifier trained here gives figures in
#     range, the real images' (--reference) clearly above chance; a classifier's
#     checkpoint, a missing --n, a .jpg and mpirun -np 2 are refused;
#   - bad set-ups fail once, clearly (no gan_discriminator, a name that is no layer,
#     a generator whose output is not an image's size, a discriminator without one
#     logit), exit 3.
set -euo pipefail
: "${NNTRAIN:?}"
. "$(dirname "$0")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
need_py numpy
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
MPI="timeout 300 mpirun --oversubscribe"
fm_idx train 0 2400 "$T/sub"
"$NNTRAIN" prepare idx "$T/sub-img" "$T/sub-lab" --out "$T/fm" --split train --shards 2 >/dev/null
fm_idx t10k 0 600 "$T/tsub"
"$NNTRAIN" prepare idx "$T/tsub-img" "$T/tsub-lab" --out "$T/fm" --split test --shards 1 >/dev/null
job() { # $1: generator output units, $2: discriminator output units, $3: gan_discriminator
  cat <<EOF2
name = "gan"
[data]
train = "$T/fm/train-*.h5"
test = "$T/fm/test-*.h5"
normalize = false
[model]
[[model.layers]]
type = "dense"
units = 64
activation = "relu"
[[model.layers]]
type = "dense"
units = $1
activation = "sigmoid"
[[model.layers]]
name = "d_in"
type = "flatten"
[[model.layers]]
type = "dense"
units = 64
activation = "leaky_relu"
[[model.layers]]
type = "dropout"
rate = 0.2
[[model.layers]]
type = "dense"
units = $2
[train]
epochs = 2
batch_size = 48
seed = 5
task = "gan"
gan_discriminator = "$3"
gan_latent = 16
[optimizer]
type = "adam"
lr = 0.001
beta1 = 0.5
[checkpoint]
every_epochs = 0
EOF2
}
job 784 1 d_in > "$T/job.toml"
P_G=$((16 * 64 + 64 + 64 * 784 + 784)) P_D=$((784 * 64 + 64 + 64 + 1))

for np in 1 2 3; do
  $MPI -np $np "$NNTRAIN" "$T/job.toml" --set "run.dir=\"$T/r$np\"" --check-replicas --no-progress \
    --dump-params "$T/p$np.bin" >"$T/o$np" 2>&1 || fail "gan -np $np: $(tail -3 "$T/o$np")"
  [ "$(stat -c %s "$T/p$np.bin")" = $((4 * (P_G + P_D))) ] || fail "the dump holds both replicas"
done
$PY - "$T" <<'PY' || fail "gan figures"
import json, sys, numpy as np
T = sys.argv[1]
P_G = 16 * 64 + 64 + 64 * 784 + 784
ps = [np.fromfile("%s/p%d.bin" % (T, n), dtype=np.float32) for n in (1, 2, 3)]
for n, p in zip((2, 3), ps[1:]):
    rel = np.abs(p - ps[0]).max() / np.abs(ps[0]).max()
    print("gan np1 vs np%d after 2 epochs: max|diff|/max|p| = %.3g" % (n, rel))
    assert rel < 1e-4, rel
ep = [json.loads(l) for l in open(T + "/r1/metrics.jsonl")]
ep = [r for r in ep if "epoch" in r and "loss" in r]
for r in ep:
    print("epoch %d: discriminator loss %.4f accuracy %.3f; test %.4f / %.3f" % (
        r["epoch"], r["loss"], r["accuracy"], r["test_loss"], r["test_accuracy"]))
assert ep[0]["accuracy"] > 0.6, ep[0]    # it tells real from fake better than chance
assert 0 < ep[-1]["test_loss"] < 5, ep[-1]
import struct, zlib
for e in (1, 2):  # the generator's 64 fixed-noise images after each epoch, 8 x 8, zoom 2
    png = open("%s/r2/samples-e%03d.png" % (T, e), "rb").read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n", png[:8]
    w, h = struct.unpack(">II", png[16:24])
    assert (w, h) == (8 * 56 + 7, 8 * 56 + 7), (w, h)
a, b = (open("%s/r2/samples-e%03d.png" % (T, e), "rb").read() for e in (1, 2))
assert a != b, "the generator's pictures did not change between epochs"
PY

# the generator moves: its parameters after 2 epochs differ from those after 1 step
"$NNTRAIN" "$T/job.toml" --set "run.dir=\"$T/one\"" --steps 1 --dump-params "$T/one.bin" \
  --no-progress --quiet || fail "one step"
cmp -s <(head -c $((4 * P_G)) "$T/one.bin") <(head -c $((4 * P_G)) "$T/p1.bin") &&
  fail "the generator did not train"

# nntrain sample: a PNG grid, deterministic by seed; scored by a classifier
ck=$(ls "$T"/r1/checkpoints/*.h5 | tail -1)
"$NNTRAIN" sample "$ck" --n 20 --out "$T/s1.png" >/dev/null || fail "sample"
"$NNTRAIN" sample "$ck" --n 20 --zoom 1 --out "$T/s1b.png" >/dev/null || fail "sample zoom 1"
"$NNTRAIN" sample "$ck" --n 20 --out "$T/s1c.png" >/dev/null || fail "sample again"
"$NNTRAIN" sample "$ck" --n 20 --seed 2 --out "$T/s2.png" >/dev/null || fail "sample seed 2"
cmp -s "$T/s1.png" "$T/s1c.png" || fail "sample: the same seed gave different pictures"
cmp -s "$T/s1.png" "$T/s2.png" && fail "sample: seeds 1 and 2 gave the same picture"
cat > "$T/cls.toml" <<EOF2
name = "cls"
[data]
train = "$T/fm/train-*.h5"
normalize = true
[model]
[[model.layers]]
type = "dense"
units = 64
activation = "relu"
[[model.layers]]
type = "dense"
units = 10
[train]
epochs = 3
batch_size = 48
[optimizer]
type = "adam"
lr = 0.002
[checkpoint]
every_epochs = 0
EOF2
"$NNTRAIN" "$T/cls.toml" --set "run.dir=\"$T/cls\"" --no-progress --quiet || fail "classifier"
cls=$(ls "$T"/cls/checkpoints/*.h5 | tail -1)
"$NNTRAIN" sample "$ck" --n 300 --score "$cls" --reference "$T/fm/train-*.h5" > "$T/score" ||
  fail "sample --score: $(cat "$T/score")"
cat "$T/score"
$PY - "$T/score" <<'PY' || fail "scores"
import re, sys
txt = open(sys.argv[1]).read()
rows = re.findall(r"(generated|reference) +(\d+) images.*?confidence ([\d.]+), histogram entropy ([\d.]+) bits, inception score ([\d.]+)", txt)
assert len(rows) == 2, txt
for kind, n, conf, h, i_s in rows:
    conf, h, i_s = float(conf), float(h), float(i_s)
    assert int(n) == 300 and 0.1 <= conf <= 1 and 0 <= h <= 3.3220 and 1 <= i_s <= 10, rows
ref = rows[1]
assert float(ref[2]) > 0.5 and float(ref[4]) > 3, ref  # the classifier tells real classes apart
PY
# eval uses both replicas: the discriminator on the test images and the generator's
# images, as the run's own test figures
"$NNTRAIN" eval "$ck" "$T/fm/test-*.h5" > "$T/ev" || fail "eval of a GAN checkpoint"
$PY - "$T/ev" "$T/r1/metrics.jsonl" <<'PY' || fail "eval of a GAN checkpoint differs from the run's test figures"
import json, re, sys
ev = open(sys.argv[1]).read()
loss = float(re.search(r"loss: +([\d.e+-]+)", ev).group(1))
acc = float(re.search(r"accuracy: +([\d.]+)", ev).group(1))
last = [json.loads(l) for l in open(sys.argv[2]) if '"test_loss"' in l][-1]
print("eval of the GAN: loss %.6f accuracy %.4f; the run's test: %.6f %.4f" % (
    loss, acc, last["test_loss"], last["test_accuracy"]))
assert abs(loss - last["test_loss"]) < 1e-5 and abs(acc - last["test_accuracy"]) < 1e-4
PY
set +e
"$NNTRAIN" predict "$ck" "$T/fm/test-*.h5" --out "$T/p.csv" 2>"$T/e"; rc=$?
[ $rc -eq 5 ] && grep -q 'train.task is "gan"' "$T/e" || fail "predict of a GAN: exit $rc: $(cat "$T/e")"
"$NNTRAIN" sample "$cls" --n 4 --out "$T/x.png" 2>"$T/e"; rc=$?
[ $rc -eq 5 ] && grep -q "has no generator" "$T/e" || fail "sample of a classifier: exit $rc: $(cat "$T/e")"
"$NNTRAIN" sample "$ck" --out "$T/x.png" 2>"$T/e"; rc=$?
[ $rc -eq 2 ] && grep -q "missing --n" "$T/e" || fail "sample without --n: exit $rc: $(cat "$T/e")"
"$NNTRAIN" sample "$ck" --n 4 --out "$T/x.jpg" 2>"$T/e"; rc=$?
[ $rc -eq 2 ] || fail "sample to .jpg: exit $rc"
$MPI -np 2 "$NNTRAIN" sample "$ck" --n 4 --out "$T/x.png" >"$T/o" 2>"$T/e"; rc=$?
[ $rc -eq 2 ] || fail "sample under mpirun -np 2: exit $rc"
set -e

for np in 2 3; do
  $MPI -np $np "$NNTRAIN" "$T/job.toml" --set "run.dir=\"$T/full$np\"" --steps 60 \
    --set train.gan_d_steps=2 --dump-params "$T/f$np.bin" --no-progress --quiet || fail "full -np $np"
  $MPI -np $np "$NNTRAIN" "$T/job.toml" --set "run.dir=\"$T/part$np\"" --steps 23 \
    --set train.gan_d_steps=2 --no-progress --quiet || fail "part -np $np"
  $MPI -np $np "$NNTRAIN" "$T/job.toml" --set "run.dir=\"$T/part$np\"" --steps 60 --resume \
    --set train.gan_d_steps=2 --dump-params "$T/res$np.bin" --no-progress --quiet || fail "resume -np $np"
  cmp -s "$T/res$np.bin" "$T/f$np.bin" || fail "-np $np: the resumed GAN differs from the uninterrupted one"
  echo "-np $np: GAN resume bit-exact (step 23 of 60, gan_d_steps = 2)"
done
ck=$(ls "$T"/part2/checkpoints/*.h5 | tail -1)
"$NNTRAIN" inspect "$ck" >"$T/inspect" 2>&1 || fail "inspect: $(cat "$T/inspect")"
grep -q "^replicas *2: generator, discriminator" "$T/inspect" ||
  fail "the checkpoint should list both replicas: $(head -20 "$T/inspect")"

# bad set-ups: exit 3, one line naming the job file
bad() { # $1: what, job text on stdin
  cat > "$T/bad.toml"
  "$NNTRAIN" "$T/bad.toml" --set "run.dir=\"$T/bad\"" --no-progress >"$T/bo" 2>"$T/be"; rc=$?
  [ $rc -eq 3 ] || fail "$1: exit $rc, want 3: $(cat "$T/be")"
  [ "$(wc -l < "$T/be")" -eq 1 ] || fail "$1: want one line: $(cat "$T/be")"
  grep -q "bad.toml" "$T/be" || fail "$1: the message names no job file: $(cat "$T/be")"
  echo "$1: $(cat "$T/be")"
}
set +e
job 784 1 "" | bad "no gan_discriminator"
job 784 1 nosuch | bad "an unknown gan_discriminator"
job 100 1 d_in | bad "a generator of the wrong size"
job 784 2 d_in | bad "two logits"
set -e
echo "e2e_gan: ok"
