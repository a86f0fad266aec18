#!/usr/bin/env bash
# The VAE task (run/tasks/vae.c, docs/tasks.md#vae) on a small Fashion-MNIST subset:
#   - the test ELBO improves over 3 epochs, its parts add up (elbo = -(recon + kl)),
#     the KL term is positive, at -np 1, 2 and 3 with replicas identical across ranks;
#     each epoch leaves a PNG of the decoder's images for fixed codes;
#   - N-invariance: the parameters agree at -np 1, 2 and 3 (to 1e-4): the sample layer's
#     noise is keyed by the global sample;
#   - an interrupted run resumes bit-exactly at -np 2 and 3;
#   - nntrain eval of the checkpoint gives the run's last test figures;
#   - nntrain sample draws images from the decoder (deterministic by seed) and shows
#     test images above their reconstructions (--reconstruct);
#   - bad set-ups fail once, clearly, exit 3.
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
job() { # $1: the sample layer's type ("sample" or "relu"), $2: loss, $3: normalize, $4: output units
  cat <<EOF2
name = "vae"
[data]
train = "$T/fm/train-*.h5"
test = "$T/fm/test-*.h5"
normalize = $3
[model]
[[model.layers]]
type = "flatten"
[[model.layers]]
type = "dense"
units = 64
activation = "relu"
[[model.layers]]
type = "dense"
units = 16
[[model.layers]]
type = "$1"
[[model.layers]]
type = "dense"
units = 64
activation = "relu"
[[model.layers]]
type = "dense"
units = $4
[train]
epochs = 3
batch_size = 48
seed = 3
task = "vae"
loss = "$2"
[optimizer]
type = "adam"
lr = 0.002
[checkpoint]
every_epochs = 0
EOF2
}
job sample binary_cross_entropy false 784 > "$T/job.toml"
for np in 1 2 3; do
  $MPI -np $np "$NNTRAIN" "$T/job.toml" --set "run.dir=\"$T/r$np\"" --check-replicas --no-progress \
    --dump-params "$T/p$np.bin" >"$T/o$np" 2>&1 || fail "vae -np $np: $(tail -3 "$T/o$np")"
done
tail -n 2 "$T/o1"
$PY - "$T" <<'PY' || fail "vae figures"
import json, sys, numpy as np
T = sys.argv[1]
ps = [np.fromfile("%s/p%d.bin" % (T, n), dtype=np.float32) for n in (1, 2, 3)]
for n, p in zip((2, 3), ps[1:]):
    rel = np.abs(p - ps[0]).max() / np.abs(ps[0]).max()
    print("vae np1 vs np%d after 3 epochs: max|diff|/max|p| = %.3g" % (n, rel))
    assert rel < 1e-4, rel
for n in (1, 2, 3):
    ep = [json.loads(l) for l in open("%s/r%d/metrics.jsonl" % (T, n))]
    ep = [r for r in ep if "epoch" in r and "test_elbo" in r]
    assert len(ep) == 3, ep
    for r in ep:
        assert abs(r["test_elbo"] + r["test_recon"] + r["test_kl"]) < 1e-6 * abs(r["test_elbo"]), r
        assert r["test_kl"] > 0 and r["test_recon"] > 0, r
        # training: the same figures with sampled codes; beta = 1, so loss = -elbo
        assert abs(r["elbo"] + r["recon"] + r["kl"]) < 1e-6 * abs(r["elbo"]), r
        assert abs(r["loss"] + r["elbo"]) < 1e-6 * abs(r["elbo"]) and r["kl"] > 0, r
    if n == 1:
        for r in ep:
            print("epoch %d: train ELBO %.2f (recon %.2f, KL %.2f), test ELBO %.2f (recon %.2f, KL %.2f)" % (
                r["epoch"], r["elbo"], r["recon"], r["kl"], r["test_elbo"], r["test_recon"], r["test_kl"]))
    assert ep[-1]["test_elbo"] > ep[0]["test_elbo"] + 1, ep   # the bound improves
import struct
pics = [open("%s/r2/samples-e%03d.png" % (T, e), "rb").read() for e in (1, 2, 3)]
for b in pics:  # the decoder's images for 64 fixed codes after each epoch, 8 x 8, zoom 2
    assert b[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", b[16:24]) == (455, 455)
assert pics[0] != pics[2], "the decoder's pictures did not change"
PY

# eval of the checkpoint: the run's last test figures
ck=$(ls "$T"/r1/checkpoints/*.h5 | tail -1)
"$NNTRAIN" eval "$ck" "$T/fm/test-*.h5" > "$T/ev" || fail "eval of a VAE checkpoint"
$PY - "$T/ev" "$T/r1/metrics.jsonl" <<'PY' || fail "eval of a VAE checkpoint differs from the run's test figures"
import json, re, sys
ev = open(sys.argv[1]).read()
elbo = float(re.search(r"elbo: +([-\d.e+]+)", ev).group(1))
last = [json.loads(l) for l in open(sys.argv[2]) if '"test_elbo"' in l][-1]
print("eval of the VAE: ELBO %.4f; the run's test: %.4f" % (elbo, last["test_elbo"]))
assert abs(elbo - last["test_elbo"]) < 1e-4 * abs(elbo)
PY

# nntrain sample: the decoder from drawn codes (deterministic by seed), and
# --reconstruct: 8 test images above their reconstructions
"$NNTRAIN" sample "$ck" --n 16 --out "$T/s1.png" >/dev/null || fail "sample of a VAE"
"$NNTRAIN" sample "$ck" --n 16 --out "$T/s1b.png" >/dev/null || fail "sample of a VAE again"
"$NNTRAIN" sample "$ck" --n 16 --seed 2 --out "$T/s2.png" >/dev/null || fail "sample seed 2"
cmp -s "$T/s1.png" "$T/s1b.png" || fail "sample of a VAE: the same seed gave different pictures"
cmp -s "$T/s1.png" "$T/s2.png" && fail "sample of a VAE: seeds 1 and 2 gave the same picture"
"$NNTRAIN" sample "$ck" --n 8 --reconstruct --data "$T/fm/test-*.h5" --zoom 1 --out "$T/rec.png" \
  >/dev/null || fail "sample --reconstruct"
$PY - "$T" <<'PY' || fail "sample pictures"
import struct, sys, zlib
T = sys.argv[1]
def size(p):
    b = open(p, "rb").read()
    assert b[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", b[16:24])
assert size(T + "/s1.png") == (4 * 56 + 3, 4 * 56 + 3), size(T + "/s1.png")   # 16: 4 x 4, zoom 2
assert size(T + "/rec.png") == (8 * 28 + 7, 2 * 28 + 1), size(T + "/rec.png")  # 8 over 8
PY
# an autoencoder's reconstructions; it has no prior to draw from
job relu mse false 784 | sed 's/^task = "vae"/task = "autoencoder"/' > "$T/ae.toml"
"$NNTRAIN" "$T/ae.toml" --set "run.dir=\"$T/ae\"" --steps 20 --no-progress --quiet || fail "autoencoder"
ae=$(ls "$T"/ae/checkpoints/*.h5 | tail -1)
"$NNTRAIN" sample "$ae" --n 4 --reconstruct --data "$T/fm/test-*.h5" --zoom 1 --out "$T/aerec.png" \
  >/dev/null || fail "sample --reconstruct of an autoencoder"
$PY -c 'import struct,sys; b=open(sys.argv[1],"rb").read(); assert struct.unpack(">II", b[16:24]) == (4*28+3, 2*28+1)' \
  "$T/aerec.png" || fail "an autoencoder's reconstructions: the picture's size"
set +e
"$NNTRAIN" sample "$ae" --n 4 --out "$T/x.png" 2>"$T/e"; rc=$?
[ $rc -eq 2 ] && grep -q "no prior" "$T/e" || fail "sample of an autoencoder: exit $rc: $(cat "$T/e")"
"$NNTRAIN" sample "$ck" --n 12 --reconstruct --out "$T/x.png" 2>"$T/e"; rc=$?
[ $rc -eq 2 ] && grep -q "multiple of 8" "$T/e" || fail "--reconstruct --n 12: exit $rc: $(cat "$T/e")"
set -e

for np in 2 3; do
  $MPI -np $np "$NNTRAIN" "$T/job.toml" --set "run.dir=\"$T/full$np\"" --steps 80 \
    --dump-params "$T/f$np.bin" --no-progress --quiet || fail "full -np $np"
  $MPI -np $np "$NNTRAIN" "$T/job.toml" --set "run.dir=\"$T/part$np\"" --steps 31 \
    --no-progress --quiet || fail "part -np $np"
  $MPI -np $np "$NNTRAIN" "$T/job.toml" --set "run.dir=\"$T/part$np\"" --steps 80 --resume \
    --dump-params "$T/res$np.bin" --no-progress --quiet || fail "resume -np $np"
  cmp -s "$T/res$np.bin" "$T/f$np.bin" || fail "-np $np: the resumed VAE differs from the uninterrupted one"
  echo "-np $np: VAE resume bit-exact (step 31 of 80)"
done

bad() { # $1: what, $2: expected text; job text on stdin
  cat > "$T/bad.toml"
  "$NNTRAIN" "$T/bad.toml" --set "run.dir=\"$T/bad\"" --no-progress >"$T/bo" 2>"$T/be"; rc=$?
  [ $rc -eq 3 ] || fail "$1: exit $rc, want 3: $(cat "$T/be")"
  [ "$(wc -l < "$T/be")" -eq 1 ] && grep -q "bad.toml" "$T/be" && grep -q "$2" "$T/be" ||
    fail "$1: want one line naming the job file and '$2': $(cat "$T/be")"
  echo "$1: $(cat "$T/be")"
}
set +e
job relu binary_cross_entropy false 784 | bad "no sample layer" "no \`sample\` layer"
job sample binary_cross_entropy true 784 | bad "BCE on normalized data" "data.normalize = false"
job sample cross_entropy false 784 | bad "cross_entropy" "must be \"binary_cross_entropy\""
job sample binary_cross_entropy false 100 | bad "a decoder of the wrong size" "as many values"
set -e
echo "e2e_vae: ok"
