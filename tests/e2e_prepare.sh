#!/usr/bin/env bash
# e2e_prepare.sh: `nntrain prepare` and `nntrain inspect` end to end.
#
# Prepares Fashion-MNIST into 3 shards per split and checks with h5py/numpy
# that the shards hold exactly the IDX contents with the right attributes;
# checks the second run is "up to date"; converts a generated IDX pair
# (HWC, plain and gzip) and CSV files (classification and regression) and
# compares them back; checks inspect's output; checks bad inputs exit 2 or 4
# with a one-line message naming the file.
set -u
NNTRAIN=${NNTRAIN:?NNTRAIN must name the nntrain binary}
T=$(mktemp -d /tmp/nn_e2e_prepare_XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # PY, fail, expect_fail, fm_idx

# Debian's python3 with h5py and numpy, and Debian's Fashion-MNIST: without
# them the test is skipped (exit 77), not passed.
need_py h5py numpy
need_fashion_mnist
SRC=$FASHION_MNIST_DIR

# ---- fashion-mnist --------------------------------------------------------
"$NNTRAIN" prepare fashion-mnist --out "$T/fm" --shards 3 >"$T/out1" 2>"$T/err1" ||
  fail "prepare fashion-mnist: $(cat "$T/err1")"
[ "$(grep -c '^wrote ' "$T/out1")" = 6 ] || fail "expected 6 'wrote' lines: $(cat "$T/out1")"
"$PY" - "$T/fm" "$SRC" <<'EOF' || fail "fashion-mnist shards differ from the IDX files"
import gzip, sys, glob
import h5py, numpy as np
out, src = sys.argv[1], sys.argv[2]
def idx(path):
    b = gzip.open(path).read()
    nd = b[3]
    dims = [int.from_bytes(b[4 + 4 * i:8 + 4 * i], 'big') for i in range(nd)]
    return np.frombuffer(b, np.uint8, offset=4 + 4 * nd).reshape(dims)
train_x = idx(f'{src}/train-images-idx3-ubyte.gz')
for split, pre in (('train', 'train'), ('test', 't10k')):
    X = idx(f'{src}/{pre}-images-idx3-ubyte.gz')
    Y = idx(f'{src}/{pre}-labels-idx1-ubyte.gz')
    files = sorted(glob.glob(f'{out}/{split}-*.h5'))
    assert len(files) == 3, files
    xs, ys = [], []
    for i, f in enumerate(files):
        with h5py.File(f, 'r') as h:
            a = h.attrs
            assert a['format'] == 'nntrain-shard', a['format']
            assert int(a['version']) == 1
            assert list(a['sample_shape']) == [1, 28, 28]
            assert int(a['num_classes']) == 10
            assert abs(float(a['feature_scale']) - 1 / 255) < 1e-15
            assert a['split'] == split
            assert int(a['shard_index']) == i and int(a['shard_count']) == 3
            assert int(a['num_samples']) == h['features'].shape[0]
            m = (train_x.astype(np.float64) / 255).mean()
            s = (train_x.astype(np.float64) / 255).std()
            assert abs(a['mean'][0] - m) < 1e-9, (a['mean'], m)
            assert abs(a['std'][0] - s) < 1e-9, (a['std'], s)
            f_ = h['features']
            assert f_.dtype == np.uint8 and f_.shape[1:] == (1, 28, 28)
            assert h['labels'].dtype == np.int32
            assert f_.compression == 'gzip' and f_.shuffle and f_.chunks[0] >= 1
            xs.append(f_[...]); ys.append(h['labels'][...])
    x = np.concatenate(xs); y = np.concatenate(ys)
    assert x.shape == (X.shape[0], 1, 28, 28), x.shape
    assert (x[:, 0] == X).all(), split + ' features differ'
    assert (y == Y).all(), split + ' labels differ'
    sizes = [len(a) for a in xs]
    assert max(sizes) - min(sizes) <= 1, sizes
print('fashion-mnist ok')
EOF

# Second run: up to date, nothing rewritten.
before=$(stat -c %Y.%s "$T"/fm/*.h5 | md5sum)
"$NNTRAIN" prepare fashion-mnist --out "$T/fm" --shards 3 >"$T/out2" 2>&1 || fail "second prepare failed"
grep -q 'up to date' "$T/out2" || fail "second run not 'up to date': $(cat "$T/out2")"
grep -q '^wrote' "$T/out2" && fail "second run rewrote files"
[ "$(stat -c %Y.%s "$T"/fm/*.h5 | md5sum)" = "$before" ] || fail "second run touched the shards"
# Fewer shards: rewrites and removes the stale third shard of each split.
"$NNTRAIN" prepare fashion-mnist --out "$T/fm" --shards 2 --force >"$T/out3" 2>&1 || fail "--shards 2: $(cat "$T/out3")"
[ "$(grep -c '^wrote ' "$T/out3")" = 4 ] || fail "--shards 2 should write 4 files: $(cat "$T/out3")"
[ -e "$T/fm/train-002.h5" ] && fail "stale train-002.h5 left behind"
[ -e "$T/fm/test-002.h5" ] && fail "stale test-002.h5 left behind"

# ---- inspect ----------------------------------------------------------------
"$NNTRAIN" inspect "$T/fm/train-000.h5" >"$T/insp" 2>&1 || fail "inspect: $(cat "$T/insp")"
for w in 'nntrain-shard, version 1' 'train (shard 1 of 2)' 'samples        30000' \
         '[1, 28, 28]' uint8 'classes        10' '(1/255)' 'mean' 'std' \
         'chunks [' 'deflate 4 + shuffle' '           9: '; do
  grep -qF -- "$w" "$T/insp" || fail "inspect output lacks '$w': $(cat "$T/insp")"
done
hist_total=$(awk '/^ +[0-9]+: [0-9]+ \(/ {s += $2} END {print s}' "$T/insp")
[ "$hist_total" = 30000 ] || fail "label histogram sums to $hist_total, expected 30000"

# ---- idx: a generated [N, H, W, C] pair, gzip images + plain labels --------
"$PY" - "$T" <<'EOF' || fail "could not write the IDX pair"
import gzip, sys
import numpy as np
d = sys.argv[1]
rng = np.random.default_rng(7)
def write(path, a, gz):
    hdr = bytes([0, 0, 8, a.ndim]) + b''.join(int(n).to_bytes(4, 'big') for n in a.shape)
    data = hdr + a.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, 'wb').write(data)
x = rng.integers(0, 256, size=(37, 5, 4, 3), dtype=np.uint8)
y = rng.integers(0, 6, size=37, dtype=np.uint8); y[0] = 5
write(f'{d}/img.idx.gz', x, True); write(f'{d}/lab.idx', y, False)
np.save(f'{d}/x.npy', x); np.save(f'{d}/y.npy', y)
write(f'{d}/lab_short.idx', y[:30], False)
EOF
"$NNTRAIN" prepare idx "$T/img.idx.gz" "$T/lab.idx" --out "$T/idx" --shards 2 >"$T/o" 2>&1 ||
  fail "prepare idx: $(cat "$T/o")"
"$NNTRAIN" prepare idx "$T/img.idx.gz" "$T/lab.idx" --out "$T/idx" --split test \
  --stats "$T/idx/train-000.h5" --classes 8 >"$T/o" 2>&1 || fail "prepare idx --stats: $(cat "$T/o")"
"$PY" - "$T" <<'EOF' || fail "idx shards differ from the generated arrays"
import sys, glob
import h5py, numpy as np
d = sys.argv[1]
x = np.load(f'{d}/x.npy'); y = np.load(f'{d}/y.npy')
files = sorted(glob.glob(f'{d}/idx/train-*.h5'))
assert len(files) == 2
xs = []; ys = []
for f in files:
    with h5py.File(f, 'r') as h:
        assert list(h.attrs['sample_shape']) == [3, 5, 4]
        assert int(h.attrs['num_classes']) == 6
        xs.append(h['features'][...]); ys.append(h['labels'][...])
        mean = h.attrs['mean']; std = h.attrs['std']
X = np.concatenate(xs)
assert (X == x.transpose(0, 3, 1, 2)).all(), 'HWC -> CHW transpose wrong'
assert (np.concatenate(ys) == y).all()
xf = x.astype(np.float64) / 255
assert np.allclose(mean, xf.mean(axis=(0, 1, 2)), atol=1e-12), (mean, xf.mean(axis=(0, 1, 2)))
assert np.allclose(std, xf.std(axis=(0, 1, 2)), atol=1e-12)
with h5py.File(f'{d}/idx/test-000.h5', 'r') as h:
    assert int(h.attrs['num_classes']) == 8
    assert h.attrs['split'] == 'test'
    assert (h.attrs['mean'] == mean).all() and (h.attrs['std'] == std).all()
print('idx ok')
EOF
expect_fail 4 lab_short.idx "$NNTRAIN" prepare idx "$T/img.idx.gz" "$T/lab_short.idx" --out "$T/idx2"
expect_fail 4 lab.idx "$NNTRAIN" prepare idx "$T/img.idx.gz" "$T/lab.idx" --out "$T/idx2" --classes 3
expect_fail 4 nope.idx "$NNTRAIN" prepare idx "$T/nope.idx" "$T/lab.idx" --out "$T/idx2"
expect_fail 2 LABELS "$NNTRAIN" prepare idx "$T/img.idx.gz" --out "$T/idx2"

# ---- csv --------------------------------------------------------------------
cat >"$T/c.csv" <<'EOF'
a,b,label,c
1.5,2,0,-3
0.25,-1e3,2,4
7,8,1,9
-2,0.5,2,1
EOF
"$NNTRAIN" prepare csv "$T/c.csv" --label label --out "$T/csv" >"$T/o" 2>&1 || fail "prepare csv: $(cat "$T/o")"
"$NNTRAIN" prepare csv "$T/c.csv" --label c --regression --out "$T/csv" --split reg --shards 2 \
  >"$T/o" 2>&1 || fail "prepare csv --regression: $(cat "$T/o")"
"$PY" - "$T" <<'EOF' || fail "csv shards differ from the CSV"
import sys, glob
import h5py, numpy as np
d = sys.argv[1]
feat = np.array([[1.5, 2, -3], [0.25, -1e3, 4], [7, 8, 9], [-2, 0.5, 1]], np.float32)
with h5py.File(f'{d}/csv/train-000.h5', 'r') as h:
    assert h['features'].dtype == np.float32
    assert (h['features'][...] == feat).all()
    assert list(h['labels'][...]) == [0, 2, 1, 2]
    assert int(h.attrs['num_classes']) == 3
    assert np.allclose(h.attrs['mean'], feat.astype(np.float64).mean(axis=0))
    assert np.allclose(h.attrs['std'], feat.astype(np.float64).std(axis=0))
xs = []; ts = []
for f in sorted(glob.glob(f'{d}/csv/reg-*.h5')):
    with h5py.File(f, 'r') as h:
        assert int(h.attrs['num_classes']) == 0 and 'labels' not in h
        xs.append(h['features'][...]); ts.append(h['targets'][...])
X = np.concatenate(xs); Tg = np.concatenate(ts)
assert Tg.shape == (4, 1) and (Tg[:, 0] == [-3, 4, 9, 1]).all()
assert (X == np.array([[1.5, 2, 0], [0.25, -1e3, 2], [7, 8, 1], [-2, 0.5, 2]], np.float32)).all()
print('csv ok')
EOF
"$NNTRAIN" inspect "$T/csv/reg-000.h5" >"$T/insp2" 2>&1 || fail "inspect regression: $(cat "$T/insp2")"
grep -q 'regression' "$T/insp2" || fail "inspect of a regression shard: $(cat "$T/insp2")"
printf 'x,y\n1,0\n2,1.5\n' >"$T/bad.csv"
expect_fail 4 "bad.csv:3:" "$NNTRAIN" prepare csv "$T/bad.csv" --label y --out "$T/csv2"
printf 'x,y\n1,0\n2,7\n' >"$T/bad2.csv"
expect_fail 4 "bad2.csv:3:" "$NNTRAIN" prepare csv "$T/bad2.csv" --label y --classes 3 --out "$T/csv2"
expect_fail 2 "no column named 'zz'" "$NNTRAIN" prepare csv "$T/c.csv" --label zz --out "$T/csv2"
expect_fail 2 "--label" "$NNTRAIN" prepare csv "$T/c.csv" --out "$T/csv2"
expect_fail 2 "exclude" "$NNTRAIN" prepare csv "$T/c.csv" --label c --classes 3 --regression --out "$T/csv2"

# ---- bad inputs ------------------------------------------------------------
echo "hello" >"$T/notes.h5"
expect_fail 4 notes.h5 "$NNTRAIN" inspect "$T/notes.h5"
expect_fail 4 "not an HDF5 file" "$NNTRAIN" inspect "$T/notes.h5"
expect_fail 4 missing.h5 "$NNTRAIN" inspect "$T/missing.h5"
head -c $(( $(stat -c %s "$T/fm/train-001.h5") / 2 )) "$T/fm/train-001.h5" >"$T/half.h5"
expect_fail 4 half.h5 "$NNTRAIN" inspect "$T/half.h5"
expect_fail 4 truncated "$NNTRAIN" inspect "$T/half.h5"
"$PY" -c "import h5py,sys; h5py.File(sys.argv[1],'w').create_dataset('x', data=[1])" "$T/other.h5"
expect_fail 4 other.h5 "$NNTRAIN" inspect "$T/other.h5"
expect_fail 2 "unknown option '--bogus'" "$NNTRAIN" inspect --bogus "$T/notes.h5"
expect_fail 2 "FILE" "$NNTRAIN" inspect
expect_fail 2 "unknown option '--shard'" "$NNTRAIN" prepare fashion-mnist --out "$T/x" --shard 3
expect_fail 2 "--out" "$NNTRAIN" prepare fashion-mnist
expect_fail 2 "--shards" "$NNTRAIN" prepare fashion-mnist --out "$T/x" --shards 0
expect_fail 2 "unknown source" "$NNTRAIN" prepare mnist --out "$T/x"
mkdir -p "$T/empty"
expect_fail 4 "apt-get install dataset-fashion-mnist" "$NNTRAIN" prepare fashion-mnist --out "$T/x" --source "$T/empty"
expect_fail 4 "$T/empty/train-images-idx3-ubyte.gz" "$NNTRAIN" prepare fashion-mnist --out "$T/x" --source "$T/empty"
for c in "prepare --help" "prepare fashion-mnist --help" "prepare idx --help" "prepare csv --help" "inspect --help"; do
  $NNTRAIN $c >"$T/h" 2>&1 || fail "'nntrain $c' failed"
  grep -q usage "$T/h" || fail "'nntrain $c' printed no usage"
done
echo "e2e_prepare: all checks passed"
