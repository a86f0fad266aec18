#!/usr/bin/env bash
# Pictures (docs/pictures.md): `nntrain dream` and `nntrain saliency` on a tiny convnet
# trained here on 2,000 Fashion-MNIST images (normalised inputs, so the pictures must undo
# the normalisation):
#  - dream raises the mean activation it maximises (a conv channel, a class logit; the
#    figures printed), --steps 0 leaves it unchanged, --blur smooths the picture; the
#    same seed writes a byte-identical PNG, another seed a different one; --from I
#    --steps 0 writes sample I's own pixels;
#  - saliency writes an RGB PNG of (2*28 + 1) x 28 (times --zoom), byte-identical on a
#    rerun, whose left half is the sample's pixels from the IDX file, whose right half (the
#    heat map) is not all black and whose gap is white; its JSON names label and prediction;
#  - every PNG is valid: signature, chunk CRCs, IHDR, zlib data, filters (a Python decoder
#    of our own: no PIL);
#  - bad inputs: an unknown layer (the list of names), a channel, index or class out of
#    range, a model that does not read images, a missing checkpoint, an unwritable output,
#    missing flags, and mpirun -np 2 and 3: one line each on stderr and the README's exit code;
#  - with fault injection, allocation failures end with exit 1 and one line.
set -uo pipefail   # no -e: expect_fail needs the failing status; checks use || fail
: "${NNTRAIN:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # PY, fail, skip, expect_fail, fm_idx, tiny_csv

# ---- a tiny convnet checkpoint ---------------------------------------------------------
fm_idx train 0 2000 "$T/sub"
"$NNTRAIN" prepare idx "$T/sub-img" "$T/sub-lab" --out "$T/fm" --split train --shards 2 \
  >/dev/null || fail "prepare idx"
cat > "$T/cnn.toml" <<EOF2
name = "e2e_pictures"
[data]
train = "$T/fm/train-*.h5"
normalize = true
[model]
[[model.layers]]
type = "conv2d"
name = "c1"
filters = 8
kernel_size = [3, 3]
padding = "same"
activation = "relu"
[[model.layers]]
type = "maxpool"
pool_size = [2, 2]
[[model.layers]]
type = "conv2d"
name = "c2"
filters = 16
kernel_size = [3, 3]
padding = "same"
activation = "relu"
[[model.layers]]
type = "maxpool"
pool_size = [2, 2]
[[model.layers]]
type = "flatten"
[[model.layers]]
type = "dense"
name = "logits"
units = 10
[train]
epochs = 3
batch_size = 64
seed = 5
[optimizer]
type = "adam"
lr = 0.003
[run]
dir = "$T/run"
EOF2
"$NNTRAIN" "$T/cnn.toml" --quiet || fail "training the convnet"
CK=$(ls "$T"/run/checkpoints/step-*.h5 | tail -1)
[ -f "$CK" ] || fail "no checkpoint in $T/run/checkpoints"

# png FILE: "W H CHANNELS" of a valid 8-bit PNG, and FILE.raw: its pixel rows (unfiltered)
cat > "$T/png.py" <<'PYEOF'
import struct, sys, zlib
p = sys.argv[1]
d = open(p, "rb").read()
assert d[:8] == b"\x89PNG\r\n\x1a\n", p + ": no PNG signature"
i, idat, ihdr, end = 8, b"", None, False
while i < len(d):
    n, = struct.unpack(">I", d[i:i + 4])
    t, c = d[i + 4:i + 8], d[i + 8:i + 8 + n]
    crc, = struct.unpack(">I", d[i + 8 + n:i + 12 + n])
    assert zlib.crc32(t + c) & 0xffffffff == crc, p + ": bad CRC in " + repr(t)
    if t == b"IHDR": ihdr = struct.unpack(">IIBBBBB", c)
    elif t == b"IDAT": idat += c
    elif t == b"IEND": end = True
    i += 12 + n
assert ihdr and end, p + ": no IHDR or IEND"
w, h, depth, ctype, _, _, interlace = ihdr
assert depth == 8 and ctype in (0, 2) and interlace == 0, p + ": not 8-bit gray/RGB"
ch = 1 if ctype == 0 else 3
raw, st, o = zlib.decompress(idat), w * ch, 0
assert len(raw) == h * (st + 1), p + ": wrong amount of pixel data"
prev, rows = bytearray(st), []
for y in range(h):
    f, line = raw[o], bytearray(raw[o + 1:o + 1 + st])
    o += 1 + st
    assert f <= 4, p + ": bad filter"
    for x in range(st):
        a = line[x - ch] if x >= ch else 0
        b = prev[x]
        c = prev[x - ch] if x >= ch else 0
        if f == 1: line[x] = (line[x] + a) & 255
        elif f == 2: line[x] = (line[x] + b) & 255
        elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
        elif f == 4:
            q = a + b - c
            pa, pb, pc = abs(q - a), abs(q - b), abs(q - c)
            line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    rows.append(bytes(line))
    prev = line
open(p + ".raw", "wb").write(b"".join(rows))
print(w, h, ch)
PYEOF
png() { "$PY" "$T/png.py" "$1" || fail "$1 is not a valid PNG"; }
# sample_bytes I: the 784 bytes of image I of the IDX subset
sample_bytes() { "$PY" -c "import sys; d = open('$T/sub-img', 'rb').read(); sys.stdout.buffer.write(d[16 + $1 * 784:16 + ($1 + 1) * 784])"; }
jget() { "$PY" -c "import json, sys; print(json.load(open('$1'))['$2'])"; }

# ---- dream ---------------------------------------------------------------------------
dream() { # OUT.json ARGS...: one run with --json
  local out=$1; shift
  "$NNTRAIN" dream "$CK" --json "$@" >"$out" || fail "dream $*"
}
up() { # FILE.json WHAT: after > before
  "$PY" -c "import json; j = json.load(open('$1')); assert j['after'] > j['before'] + 0.1, j" ||
    fail "$2 did not raise the activation: $(cat "$1")"
  echo "dream $2: mean activation $(jget "$1" before) -> $(jget "$1" after)"
}
dream "$T/a.json" --layer c2 --channel 3 --steps 40 --out "$T/a.png"
up "$T/a.json" "c2 channel 3, 40 steps"
[ "$(png "$T/a.png")" = "28 28 1" ] || fail "dream's PNG is not 28x28 gray: $(png "$T/a.png")"
dream "$T/b.json" --layer c2 --channel 3 --steps 40 --out "$T/b.png"
cmp -s "$T/a.png" "$T/b.png" || fail "dream with the same seed wrote different PNGs"
dream "$T/c.json" --layer c2 --channel 3 --steps 40 --seed 2 --out "$T/c.png"
cmp -s "$T/a.png" "$T/c.png" && fail "dream with seeds 1 and 2 wrote the same PNG"
up "$T/c.json" "c2 channel 3, seed 2"
dream "$T/d.json" --layer c1 --steps 40 --zoom 3 --out "$T/d.png"
up "$T/d.json" "c1 (all channels)"
[ "$(png "$T/d.png")" = "84 84 1" ] || fail "dream --zoom 3's PNG is not 84x84: $(png "$T/d.png")"
dream "$T/e.json" --layer logits --channel 7 --steps 40 --lr 0.02 --out "$T/e.png"
up "$T/e.json" "logits channel 7 (sneaker)"
# --blur: still an ascent, and a smoother picture than the same run without it (total
# variation: the sum of absolute differences of neighbouring pixels)
dream "$T/bl.json" --layer c2 --channel 3 --steps 40 --blur 0.1 --out "$T/bl.png"
up "$T/bl.json" "c2 channel 3 with --blur 0.1"
png "$T/bl.png" >/dev/null
"$PY" - "$T/a.png.raw" "$T/bl.png.raw" <<'PYEOF' || fail "--blur 0.1 did not smooth the picture"
import sys
def tv(p):
    b = open(p, "rb").read()
    return sum(abs(b[y * 28 + x] - b[y * 28 + x + 1]) for y in range(28) for x in range(27)) + \
           sum(abs(b[y * 28 + x] - b[(y + 1) * 28 + x]) for y in range(27) for x in range(28))
a, bl = tv(sys.argv[1]), tv(sys.argv[2])
print("total variation: %d without --blur, %d with --blur 0.1" % (a, bl))
assert bl < 0.8 * a
PYEOF
dream "$T/f.json" --layer c2 --steps 0 --out "$T/f.png"
[ "$(jget "$T/f.json" before)" = "$(jget "$T/f.json" after)" ] ||
  fail "dream --steps 0 changed the activation: $(cat "$T/f.json")"
# --from 3 --steps 0: the picture is sample 3 itself (normalisation undone exactly)
dream "$T/g.json" --layer c2 --from 3 --steps 0 --out "$T/g.png"
png "$T/g.png" >/dev/null
sample_bytes 3 >"$T/s3"
cmp -s "$T/g.png.raw" "$T/s3" || fail "dream --from 3 --steps 0 is not sample 3's pixels"
"$NNTRAIN" dream "$CK" --layer c2 --channel 0 --steps 5 --out "$T/h.png" >"$T/h.txt" ||
  fail "dream without --json"
grep -q "mean activation .* -> " "$T/h.txt" || fail "dream's line: $(cat "$T/h.txt")"

# ---- saliency ------------------------------------------------------------------------
"$NNTRAIN" saliency "$CK" "$T/fm/train-*.h5" --index 5 --json --out "$T/s.png" >"$T/s.json" ||
  fail "saliency --index 5"
[ "$(png "$T/s.png")" = "57 28 3" ] || fail "saliency's PNG is not 57x28 RGB: $(png "$T/s.png")"
"$NNTRAIN" saliency "$CK" "$T/fm/train-*.h5" --index 5 --json --out "$T/s2.png" >/dev/null ||
  fail "saliency rerun"
cmp -s "$T/s.png" "$T/s2.png" || fail "saliency is not deterministic"
sample_bytes 5 >"$T/s5"
"$PY" - "$T/s.png.raw" "$T/s5" <<'PYEOF' || fail "saliency's picture is wrong"
import sys
px, img = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
W, H = 57, 28
row = lambda y: px[y * W * 3:(y + 1) * W * 3]
left = bytes(row(y)[3 * x] for y in range(H) for x in range(28))
assert left == img, "the left half is not the sample's pixels"
assert all(row(y)[3 * x + c] == row(y)[3 * x] for y in range(H) for x in range(28) for c in (1, 2)), \
    "the left half is not gray"
assert all(row(y)[3 * 28:3 * 29] == b"\xff\xff\xff" for y in range(H)), "the gap is not white"
heat = [row(y)[3 * (29 + x):3 * (30 + x)] for y in range(H) for x in range(28)]
assert sum(1 for p in heat if p != b"\0\0\0") > 28, "the heat map is (nearly) all black"
assert any(p == b"\xff\xff\xff" for p in heat), "no pixel reaches the top of the scale"
PYEOF
"$PY" -c "
import json; j = json.load(open('$T/s.json'))
assert j['grad_max'] > 0 and j['grad_mean'] > 0 and j['label'] == 2 and j['class'] == j['predicted'], j
assert (j['width'], j['height']) == (57, 28), j" || fail "saliency's JSON: $(cat "$T/s.json")"
echo "saliency sample 5: $(cat "$T/s.json")"
"$NNTRAIN" saliency "$CK" "$T/fm/train-*.h5" --index 5 --class 0 --zoom 4 --out "$T/s4.png" \
  >"$T/s4.txt" || fail "saliency --class 0 --zoom 4"
[ "$(png "$T/s4.png")" = "225 112 3" ] || fail "saliency --zoom 4 is not 225x112: $(png "$T/s4.png")"
grep -q "predicted [0-9], class 0 logit" "$T/s4.txt" || fail "saliency's line: $(cat "$T/s4.txt")"

# ---- bad inputs ------------------------------------------------------------------------
for c in dream saliency; do
  "$NNTRAIN" $c --help >"$T/help" || fail "$c --help exited $?"
  grep -q "^usage: nntrain $c CKPT.h5" "$T/help" || fail "$c --help: $(head -2 "$T/help")"
done
expect_fail 2 "--blur '2': expected a number from 0 to 1" \
  "$NNTRAIN" dream "$CK" --layer c2 --steps 1 --blur 2 --out "$T/x.png"
expect_fail 2 "unknown option '--frob'" "$NNTRAIN" saliency "$CK" x --index 0 --frob --out "$T/x.png"
expect_fail 2 "its layers: c1, c1_relu, maxpool1, c2, c2_relu, maxpool3, flatten4, logits" \
  "$NNTRAIN" dream "$CK" --layer nope --steps 3 --out "$T/x.png"
expect_fail 2 "--channel 16: layer 'c2' has 16 channels" \
  "$NNTRAIN" dream "$CK" --layer c2 --channel 16 --steps 3 --out "$T/x.png"
expect_fail 2 "--from 2000: the data has 2000 samples" \
  "$NNTRAIN" dream "$CK" --layer c2 --from 2000 --steps 3 --out "$T/x.png"
expect_fail 2 "needs --steps" "$NNTRAIN" dream "$CK" --layer c2 --out "$T/x.png"
expect_fail 2 "needs --out" "$NNTRAIN" dream "$CK" --layer c2 --steps 1
expect_fail 2 "--lr" "$NNTRAIN" dream "$CK" --layer c2 --steps 1 --lr 0 --out "$T/x.png"
expect_fail 4 "$T/no/dir/x.png" "$NNTRAIN" dream "$CK" --layer c2 --steps 1 --out "$T/no/dir/x.png"
expect_fail 5 "$T/missing.h5" "$NNTRAIN" dream "$T/missing.h5" --layer c2 --steps 1 --out "$T/x.png"
expect_fail 2 "--index 2000: the data has 2000 samples" \
  "$NNTRAIN" saliency "$CK" "$T/fm/train-*.h5" --index 2000 --out "$T/x.png"
expect_fail 2 "--class 10: the model has 10 outputs" \
  "$NNTRAIN" saliency "$CK" "$T/fm/train-*.h5" --index 0 --class 10 --out "$T/x.png"
expect_fail 2 "needs --index" "$NNTRAIN" saliency "$CK" "$T/fm/train-*.h5" --out "$T/x.png"
expect_fail 4 "$T/nodata" "$NNTRAIN" saliency "$CK" "$T/nodata/*.h5" --index 0 --out "$T/x.png"
[ -e "$T/x.png" ] && fail "a failed command left $T/x.png"
ls "$T"/*.tmp 2>/dev/null && fail "a failed command left a .tmp file"
# a model of three CSV features is not an image model
tiny_csv "$T/tiny.csv" 64
"$NNTRAIN" prepare csv "$T/tiny.csv" --label label --classes 2 --out "$T/tiny" >/dev/null ||
  fail "prepare csv"
cat > "$T/mlp.toml" <<EOF2
name = "e2e_pictures_csv"
[data]
train = "$T/tiny/train-*.h5"
$(mlp_model)
[train]
epochs = 1
batch_size = 16
[run]
dir = "$T/run_csv"
EOF2
sed -i 's/units = 10/units = 2/' "$T/mlp.toml"
"$NNTRAIN" "$T/mlp.toml" --quiet || fail "training the CSV model"
CSV=$(ls "$T"/run_csv/checkpoints/step-*.h5 | tail -1)
expect_fail 5 "pictures need images [C, H, W] with 1 or 3 channels" \
  "$NNTRAIN" dream "$CSV" --layer dense0 --steps 1 --out "$T/x.png"
expect_fail 5 "pictures need images" \
  "$NNTRAIN" saliency "$CSV" "$T/tiny/train-*.h5" --index 0 --out "$T/x.png"
# one process only: under mpirun -np 2 and 3, one line (rank 0's) and exit 2
for np in 2 3; do
  for c in "dream $CK --layer c2 --steps 1" "saliency $CK $T/fm/train-000.h5 --index 0"; do
    timeout 120 mpirun --oversubscribe -np $np "$NNTRAIN" $c --out "$T/x.png" >"$T/so" 2>"$T/se"
    rc=$?
    [ "$rc" = 2 ] || fail "${c%% *} under mpirun -np $np exited $rc, expected 2: $(cat "$T/se")"
    [ "$(grep -c "runs on one process" "$T/se")" = 1 ] ||
      fail "${c%% *} under mpirun -np $np should say once that it runs on one process: $(cat "$T/se")"
  done
done
[ -e "$T/x.png" ] && fail "a refused run wrote $T/x.png"

# ---- allocation failures (a -DNN_FAULT_INJECTION=ON build): every NN_ALLOCFAIL_SAMPLE-th
# site (default 8) of dream and saliency failed once must end with exit 1 and one line
# (tests/tools/allocwalk.sh). On an MLP over the images: a oneDNN convolution's failed
# arena is not an error but a documented fall-back to the reference backend (exit 0).
if "$NNTRAIN" --version | grep -q "fault injection"; then
  . "$(dirname "${BASH_SOURCE[0]}")/tools/allocwalk.sh"   # walk
  export NN_ALLOCFAIL_SAMPLE=${NN_ALLOCFAIL_SAMPLE:-8}
  cat > "$T/fm_mlp.toml" <<EOF2
name = "e2e_pictures_mlp"
[data]
train = "$T/fm/train-*.h5"
$(mlp_model)
[train]
epochs = 1
batch_size = 100
[run]
dir = "$T/run_mlp"
EOF2
  "$NNTRAIN" "$T/fm_mlp.toml" --quiet || fail "training the MLP"
  MLP=$(ls "$T"/run_mlp/checkpoints/step-*.h5 | tail -1)
  w_dream() { $RUN "$NNTRAIN" dream "$MLP" --layer dense0 --channel 1 --steps 2 --blur 0.1 \
                --out "$FAILDIR/d.png"; }
  w_saliency() { $RUN "$NNTRAIN" saliency "$MLP" "$T/fm/train-*.h5" --index 3 \
                   --out "$FAILDIR/s.png"; }
  walk dream w_dream
  walk saliency w_saliency
  [ "$WALK_BAD" = 0 ] || fail "$WALK_BAD allocation-failure runs misbehaved (above)"
fi
echo "e2e_pictures: ok"
