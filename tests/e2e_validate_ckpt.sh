#!/usr/bin/env bash
# Checkpoint validation (issue 11): a tensor table whose shapes are enormous
# (sizes near 2^31, products past 2^32) is refused by inspect and eval with
# exit 5 and one line naming the file, the table and the record's shape
# (checked with core/checked.h; it used to be reported as a confusing
# 'ntrainable ... does not end on a parameter tensor (4294967456 parameters)'
# or 'bad dimension'), and a checkpoint path that does not exist exits 5.
set -uo pipefail
: "${NNTRAIN:?}"
export OPENBLAS_NUM_THREADS=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # PY, fail, expect_fail, need_py
need_py h5py numpy

$PY - "$T" <<'PY'
import sys, h5py, numpy as np
T = sys.argv[1]
with h5py.File(T + '/d.h5', 'w') as f:
    a = f.attrs
    a['format'] = 'nntrain-shard'; a['version'] = np.int32(1)
    a['sample_shape'] = np.array([1, 4, 4], dtype=np.int32)
    a['num_classes'] = np.int32(10); a['feature_scale'] = np.float64(1.0)
    a['mean'] = np.array([0.0]); a['std'] = np.array([1.0])
    a['shard_index'] = np.int32(0); a['shard_count'] = np.int32(1)
    a['num_samples'] = np.int64(16); a['split'] = 'train'; a['source'] = 'e2e_validate_ckpt'
    f.create_dataset('features', data=np.random.default_rng(2).standard_normal((16, 1, 4, 4)).astype(np.float32))
    f.create_dataset('labels', data=np.arange(16, dtype=np.int32) % 10)
PY
cat >"$T/j.toml" <<EOF
name = "vc"
[data]
train = "$T/d.h5"
[model]
[[model.layers]]
type = "dense"
units = 10
[train]
epochs = 1
batch_size = 4
loss = "cross_entropy"
[optimizer]
type = "adam"
lr = 0.001
[run]
dir = "$T/run"
EOF
"$NNTRAIN" "$T/j.toml" >/dev/null 2>"$T/se" || fail "training: $(cat "$T/se")"
CK=$(ls "$T"/run/checkpoints/*.h5 | tail -1)
[ -f "$CK" ] || fail "no checkpoint"
$PY - "$CK" "$T" <<'PY'
import sys, shutil, h5py, numpy as np
ck, T = sys.argv[1], sys.argv[2]
for name, shape, nd in (('big', (65536, 65536, 0, 0), 2),
                        ('huge', (2147483647, 2147483647, 2147483647, 0), 3)):
    shutil.copy(ck, T + '/' + name + '.h5')
    with h5py.File(T + '/' + name + '.h5', 'r+') as f:
        t = f['replicas/model/tensors'][...]
        t[1]['shape'] = np.array(shape, dtype=np.int32); t[1]['ndim'] = nd
        f['replicas/model/tensors'][...] = t
PY
"$NNTRAIN" eval "$CK" "$T/d.h5" >/dev/null 2>"$T/se" || fail "eval of the good checkpoint: $(cat "$T/se")"
for c in big huge; do
  want="$T/$c.h5: replicas/model/tensors: record 1 (dense0/bias): shape ["
  expect_fail 5 "$want" "$NNTRAIN" inspect "$T/$c.h5"
  grep -q "has more than 2147483647 elements" "$T/se" || fail "inspect $c: $(cat "$T/se")"
  expect_fail 5 "$want" "$NNTRAIN" eval "$T/$c.h5" "$T/d.h5"
done
expect_fail 5 "$T/none.h5: no such file" "$NNTRAIN" eval "$T/none.h5" "$T/d.h5"
echo PASS
