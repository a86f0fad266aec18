#!/usr/bin/env bash
# Gradient accumulation (train.accumulate, docs/training.md#gradient-accumulation) on a
# Fashion-MNIST subset of 1500 samples (so every epoch ends in a partial step):
#   1. an MLP with dropout, Adam and a cosine schedule: batch_size 24 x accumulate 4 ends
#      with the parameters of batch_size 96 (max|diff|/max|p| < 1e-5) at -np 1, 2 and 3,
#      and batch_size 16 x 4 those of 64 at -np 1 and 2; the same steps, the same epoch
#      losses (rel. 1e-5), the throughput counted over every sample of the epoch
#      (samples_per_s x epoch_s = 1500), the start record says accumulate 4, replicas stay
#      identical (--check-replicas); a control: 24 x 4 against plain 24 differs by > 1e-2;
#   2. the autoencoder and VAE kinds: batch 24 x 2 equals 48 at -np 2; a GAN (dropout in
#      the discriminator, a generator step every second batch) 24 x 2 equals 48 at -np 2
#      and 3, both replicas (a language model's streams: e2e_lm.sh);
#   3. BatchNorm normalizes each micro-batch: 24 x 4 on 1 rank trains as 96 on 4 ranks
#      (< 1e-5), not as 96 on 1 rank (> 1e-3); replicas stay identical at -np 3;
#   4. a SIGUSR1 stop mid-epoch at -np 2 and 3, resumed, ends byte-identical to the
#      uninterrupted run; a resume with another train.accumulate is refused (exit 5);
#   5. bad values (0, negative, too large, more samples per step than the training set)
#      fail with one line naming file:line:col, exit 3.
set -uo pipefail   # not -e: expect_fail runs commands that must fail
: "${NNTRAIN:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
T=$(mktemp -d)
MPIPID=
cleanup() {
  if [ -n "$MPIPID" ] && kill -0 "$MPIPID" 2>/dev/null; then kill -KILL "$MPIPID" 2>/dev/null || true; fi
  rm -rf "$T"
}
trap cleanup EXIT
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # PY, fail, skip, expect_fail, fm_idx
need_py numpy
MPI="timeout 300 mpirun --oversubscribe"

fm_idx train 0 1500 "$T/sub" || fail "fm_idx"
"$NNTRAIN" prepare idx "$T/sub-img" "$T/sub-lab" --out "$T/d" --split train --shards 2 \
  >/dev/null || fail "prepare idx"

# job [extra train keys...]: the MLP with dropout; train keys from the arguments, one a line
job() {
  cat <<EOF
name = "accum"
[data]
train = "$T/d/train-*.h5"
[model]
[[model.layers]]
type = "dense"
units = 64
activation = "relu"
[[model.layers]]
type = "dropout"
rate = 0.2
[[model.layers]]
type = "dense"
units = 10
[train]
epochs = 2
seed = 5
$(printf '%s\n' "$@")
[optimizer]
type = "adam"
lr = 0.001
[schedule]
type = "cosine"
[checkpoint]
every_epochs = 0
[run]
progress = false
EOF
}

# run NAME NP JOBFILE [args...]: train at -np NP into $T/NAME, parameters in $T/NAME.bin
run() {
  local name=$1 np=$2 file=$3; shift 3
  $MPI -np "$np" "$NNTRAIN" "$file" --quiet --check-replicas --set "run.dir=\"$T/$name\"" \
    --dump-params "$T/$name.bin" "$@" >"$T/$name.out" 2>&1 ||
    { cat "$T/$name.out"; fail "$name at -np $np"; }
}

# same A B TOL: the parameters of runs A and B agree to max|diff|/max|p| < TOL (printed)
same() {
  $PY - "$T" "$1" "$2" "$3" <<'PY'
import sys, numpy as np
T, a, b, tol = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
pa = np.fromfile("%s/%s.bin" % (T, a), dtype=np.float32)
pb = np.fromfile("%s/%s.bin" % (T, b), dtype=np.float32)
assert pa.size == pb.size and pa.size > 0, (pa.size, pb.size)
rel = float(np.abs(pa - pb).max() / np.abs(pb).max())
print("%-8s vs %-8s max|diff|/max|p| = %.3g, %.1f%% of the floats bit-identical"
      % (a, b, rel, 100 * float((pa == pb).mean())))
sys.exit(0 if rel < tol else 1)
PY
}

# records A B: both runs' epoch records agree (steps, loss), the epochs count all 1500
# samples in their throughput, and A's start record says accumulate 4
records() {
  $PY - "$T" "$1" "$2" <<'PY'
import json, sys
T, a, b = sys.argv[1:]
def recs(n):
    return [json.loads(l) for l in open("%s/%s/metrics.jsonl" % (T, n))]
ra, rb = recs(a), recs(b)
start = [r for r in ra if r.get("event") == "start"][0]
assert start["accumulate"] == 4, start
ea = [r for r in ra if "epoch" in r and "loss" in r]
eb = [r for r in rb if "epoch" in r and "loss" in r]
assert len(ea) == len(eb) == 2, (len(ea), len(eb))
for x, y in zip(ea, eb):
    assert x["step"] == y["step"], (x["step"], y["step"])
    assert abs(x["loss"] - y["loss"]) <= 1e-5 * abs(y["loss"]), (x["loss"], y["loss"])
    for r in (x, y):
        n = r["samples_per_s"] * r["epoch_s"]
        assert abs(n - 1500) < 1e-3 * 1500, ("samples counted", n)
print("%s vs %s: epoch steps %s, losses %s ~ %s" % (a, b, [r["step"] for r in ea],
      ["%.6f" % r["loss"] for r in ea], ["%.6f" % r["loss"] for r in eb]))
PY
}

# ---- 1. the same parameters as the k-times larger batch ----------------------------
job "batch_size = 24" "accumulate = 4" > "$T/a24x4.toml"
job "batch_size = 96" > "$T/a96.toml"
job "batch_size = 16" "accumulate = 4" > "$T/a16x4.toml"
job "batch_size = 64" > "$T/a64.toml"
job "batch_size = 24" > "$T/a24.toml"
for np in 1 2 3; do
  run "k4np$np" $np "$T/a24x4.toml"
  run "b96np$np" $np "$T/a96.toml"
  same "k4np$np" "b96np$np" 1e-5 || fail "24 x 4 vs 96 at -np $np"
  records "k4np$np" "b96np$np" || fail "records 24 x 4 vs 96 at -np $np"
done
for np in 1 2; do
  run "s4np$np" $np "$T/a16x4.toml"
  run "b64np$np" $np "$T/a64.toml"
  same "s4np$np" "b64np$np" 1e-5 || fail "16 x 4 vs 64 at -np $np"
done
same k4np1 k4np3 1e-5 || fail "24 x 4 at -np 1 vs 3"
run b24np1 1 "$T/a24.toml"
if same k4np1 b24np1 1e-2; then fail "control: 24 x 4 equals plain 24"; fi
echo "control: 24 x 4 and plain 24 differ by more than 1e-2 (as they must)"

# ---- 2. autoencoder and VAE ---------------------------------------------------------
ae() { # ae TASK LOSS NORMALIZE [train keys...]
  local task=$1 loss=$2 norm=$3; shift 3
  local mid='type = "dense"
units = 8'
  [ "$task" = vae ] && mid='type = "dense"
units = 16
[[model.layers]]
type = "sample"'
  cat <<EOF
name = "accum_$task"
[data]
train = "$T/d/train-*.h5"
normalize = $norm
[model]
[[model.layers]]
type = "flatten"
[[model.layers]]
type = "dense"
units = 32
activation = "relu"
[[model.layers]]
$mid
[[model.layers]]
type = "dense"
units = 784
[train]
epochs = 1
seed = 3
task = "$task"
loss = "$loss"
$(printf '%s\n' "$@")
[optimizer]
type = "adam"
lr = 0.002
[checkpoint]
every_epochs = 0
[run]
progress = false
EOF
}
ae autoencoder mse true "batch_size = 24" "accumulate = 2" > "$T/ae2.toml"
ae autoencoder mse true "batch_size = 48" > "$T/ae1.toml"
ae vae binary_cross_entropy false "batch_size = 24" "accumulate = 2" > "$T/vae2.toml"
ae vae binary_cross_entropy false "batch_size = 48" > "$T/vae1.toml"
for k in ae vae; do
  run "${k}2" 2 "$T/${k}2.toml"
  run "${k}1" 2 "$T/${k}1.toml"
  same "${k}2" "${k}1" 1e-5 || fail "$k: 24 x 2 vs 48 at -np 2"
done
# the GAN: both phases over the micro-batches, noise and dropout keyed by the samples'
# places in the optimizer batch, so 24 x 2 trains both replicas as 48 does
gan() { # gan [train keys...]
  cat <<EOF
name = "accum_gan"
[data]
train = "$T/d/train-*.h5"
normalize = false
[model]
[[model.layers]]
type = "dense"
units = 32
activation = "relu"
[[model.layers]]
type = "dense"
units = 784
activation = "sigmoid"
[[model.layers]]
name = "d_in"
type = "flatten"
[[model.layers]]
type = "dense"
units = 32
activation = "leaky_relu"
[[model.layers]]
type = "dropout"
rate = 0.2
[[model.layers]]
type = "dense"
units = 1
[train]
epochs = 1
seed = 4
task = "gan"
gan_discriminator = "d_in"
gan_latent = 8
gan_d_steps = 2
$(printf '%s\n' "$@")
[optimizer]
type = "adam"
lr = 0.001
beta1 = 0.5
[checkpoint]
every_epochs = 0
[run]
progress = false
EOF
}
gan "batch_size = 24" "accumulate = 2" > "$T/gan2.toml"
gan "batch_size = 48" > "$T/gan1.toml"
gan "batch_size = 24" > "$T/gan24.toml"
for np in 2 3; do
  run "gan2np$np" $np "$T/gan2.toml"
  run "gan1np$np" $np "$T/gan1.toml"
  same "gan2np$np" "gan1np$np" 1e-5 || fail "gan: 24 x 2 vs 48 at -np $np"
done
run gan24np2 2 "$T/gan24.toml"
if same gan2np2 gan24np2 1e-2; then fail "control: gan 24 x 2 equals plain 24"; fi

# ---- 3. BatchNorm: statistics per micro-batch, replicas identical -------------------
# Each micro-batch normalizes over its own samples, so 24 x 4 on one rank trains as
# batch 96 on 4 ranks does (each rank's slice there is one micro-batch here; the running
# statistics, which training does not read, are updated differently), and not as 96 on
# one rank.
sed 's/^type = "dropout"$/type = "batchnorm"/; /^rate = 0.2$/d' "$T/a24x4.toml" > "$T/bn.toml"
sed 's/^type = "dropout"$/type = "batchnorm"/; /^rate = 0.2$/d' "$T/a96.toml" > "$T/bn96.toml"
grep -q batchnorm "$T/bn.toml" || fail "no batchnorm in the job"
run bn 1 "$T/bn.toml"
run bn96np4 4 "$T/bn96.toml"
run bn96np1 1 "$T/bn96.toml"
run bnnp3 3 "$T/bn.toml"
same bn bn96np4 1e-5 || fail "batchnorm: 24 x 4 on 1 rank vs 96 on 4"
if same bn bn96np1 1e-3; then fail "batchnorm: 24 x 4 equals 96 on one rank"; fi
echo "batchnorm: 24 x 4 differs from 96 on one rank by more than 1e-3 (as documented)"

# ---- 4. SIGUSR1 mid-epoch, resumed: byte-identical ----------------------------------
M=2000; [ -n "${ASAN_OPTIONS:-}" ] && M=600
# 16 steps per epoch (1500 / 96); 300 epochs: runs stop at --steps M or on the signal
job "batch_size = 24" "accumulate = 4" | sed 's/^epochs = 2$/epochs = 300/' > "$T/long.toml"
resume_at() { # resume_at NP
  local np=$1 ref="ref$np" try s rc
  run "$ref" "$np" "$T/long.toml" --steps $M
  for try in 1 2 3; do
    rm -rf "$T/sig$np"
    # mpirun itself (not under timeout, which a SIGUSR1 would end) takes the signal
    mpirun --oversubscribe -np "$np" "$NNTRAIN" "$T/long.toml" --quiet \
      --set "run.dir=\"$T/sig$np\"" --steps $M >"$T/sig$np.out" 2>&1 &
    MPIPID=$!
    for _ in $(seq 600); do
      grep -qs '"event": "start"' "$T/sig$np/metrics.jsonl" && break
      kill -0 "$MPIPID" 2>/dev/null || break
      sleep 0.05
    done
    sleep 0.3
    kill -USR1 "$MPIPID" 2>/dev/null
    rc=0; wait "$MPIPID" || rc=$?; MPIPID=
    [ "$rc" = 75 ] || { cat "$T/sig$np.out"; fail "SIGUSR1 at -np $np: exit $rc, expected 75"; }
    s=$(grep -o 'stopped on a signal at step [0-9]*' "$T/sig$np.out" | grep -o '[0-9]*$')
    [ -n "$s" ] || { cat "$T/sig$np.out"; fail "-np $np: no stop message"; }
    [ $((s % 16)) != 0 ] && break   # mid-epoch; else try again
    echo "-np $np: the signal landed at an epoch's end (step $s); again"
  done
  [ $((s % 16)) != 0 ] || fail "-np $np: three signals landed at epochs' ends"
  $MPI -np "$np" "$NNTRAIN" "$T/long.toml" --quiet --set "run.dir=\"$T/sig$np\"" --steps $M \
    --resume --dump-params "$T/sig$np.bin" >"$T/sig${np}b.out" 2>&1 ||
    { cat "$T/sig${np}b.out"; fail "resume at -np $np"; }
  cmp "$T/$ref.bin" "$T/sig$np.bin" || fail "-np $np: the resumed run differs from the uninterrupted one"
  echo "-np $np: stopped by SIGUSR1 at step $s (epoch $((s / 16 + 1)), step $((s % 16)) of 16)," \
       "resumed to $M: parameters byte-identical"
}
resume_at 2
resume_at 3
expect_fail 5 "train.accumulate was 4" "$NNTRAIN" "$T/long.toml" --quiet \
  --set "run.dir=\"$T/sig2\"" --resume --set train.accumulate=2

# ---- 5. bad values ------------------------------------------------------------------
line=$(grep -n '^accumulate = 4$' "$T/a24x4.toml" | cut -d: -f1)
for v in 0 -3 65537; do
  sed "s/^accumulate = 4\$/accumulate = $v/" "$T/a24x4.toml" > "$T/bad.toml"
  expect_fail 3 "bad.toml:$line:14: train.accumulate: $v is out of range" \
    "$NNTRAIN" "$T/bad.toml" --quiet --set "run.dir=\"$T/bad\""
done
sed 's/^accumulate = 4$/accumulate = 100/' "$T/a24x4.toml" > "$T/bad.toml"
expect_fail 3 "bad.toml:$line:14: train.accumulate = 100 makes optimizer steps of 100 x 24 = 2400 samples, more than the 1500 training samples (at most 62)" \
  "$NNTRAIN" "$T/bad.toml" --quiet --set "run.dir=\"$T/bad\""
$MPI -np 2 "$NNTRAIN" "$T/bad.toml" --quiet --set "run.dir=\"$T/bad\"" >"$T/so" 2>"$T/se"
rc=$?
[ $rc = 3 ] && [ "$(grep -c 'bad.toml:' "$T/se")" = 1 ] ||
  fail "-np 2, too large: exit $rc, $(cat "$T/se")"
sed 's/^accumulate = 4$/accumulate = 65536/; s/^batch_size = 24$/batch_size = 512/' "$T/a24x4.toml" \
  > "$T/bad.toml"
expect_fail 3 "bad.toml:$line:14: train.accumulate = 65536 x train.batch_size = 512 is 33554432" \
  "$NNTRAIN" "$T/bad.toml" --quiet
sed 's/^accumulate = 4$/accumulate = 65536/' "$T/a24x4.toml" > "$T/bad.toml"
expect_fail 3 "bad.toml:$line:14: train.accumulate = 65536 makes optimizer steps" \
  "$NNTRAIN" "$T/bad.toml" --quiet --set "run.dir=\"$T/bad\""
echo "bad values: one line each with file:line:col, exit 3"
echo "e2e_accumulate: all checks passed"
