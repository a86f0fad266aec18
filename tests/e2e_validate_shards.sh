#!/usr/bin/env bash
# Shard validation (issue 11): shards written with h5py whose attributes are
# self-consistent but hostile are refused by train, check, eval and inspect
# with exit 4 and one line naming the file and the attribute or dataset:
# an enormous sample shape (sizes near 2^31, which used to overflow), a
# 'mean' of the wrong length (used to be reported as 'std'), negative or NaN
# 'std' (0 stays valid: a constant feature), and float features holding NaN/Inf (reported with the row as they
# are read, instead of training to NaN).
set -uo pipefail
: "${NNTRAIN:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # PY, fail, expect_fail, need_py
need_py h5py numpy

# mk NAME SHAPE [key=value ...]: a 2-sample shard (uint8 unless ftype=f4)
$PY - "$T" <<'PY'
import sys, h5py, numpy as np
T = sys.argv[1]
def mk(name, shape, mean=(0.5,), std=(0.25,), ftype='u1', data=None, n=2):
    with h5py.File(T + '/' + name + '.h5', 'w') as f:
        a = f.attrs
        a['format'] = 'nntrain-shard'; a['version'] = np.int32(1)
        a['sample_shape'] = np.array(shape, dtype=np.int32)
        a['num_classes'] = np.int32(10); a['feature_scale'] = np.float64(1.0)
        a['mean'] = np.array(mean, dtype=np.float64); a['std'] = np.array(std, dtype=np.float64)
        a['shard_index'] = np.int32(0); a['shard_count'] = np.int32(1)
        a['num_samples'] = np.int64(n); a['split'] = 'train'; a['source'] = 'e2e_validate_shards'
        ch = (1,) + (1,) * (len(shape) - 1) + (min(shape[-1], 1024),)
        d = f.create_dataset('features', shape=(n,) + tuple(shape), dtype=ftype, chunks=ch)
        if data is not None: d[...] = data
        f.create_dataset('labels', data=np.arange(n, dtype=np.int32) % 10)
mk('ok', [1, 4, 4], ftype='f4', data=np.ones((2, 1, 4, 4), np.float32))
mk('huge', [1, 2147483647, 2147483647])
mk('huge2', [1, 65536, 65536])
mk('meanlen', [1, 4, 4], mean=(0.1, 0.2))
mk('stdlen', [1, 4, 4], std=(0.1, 0.2))
mk('stdneg', [1, 4, 4], std=(-1.0,))
mk('stdnan', [1, 4, 4], std=(float('nan'),))
mk('stdzero', [1, 4, 4], std=(0.0,))  # a constant feature: valid (normalized with 1)
mk('meaninf', [1, 4, 4], mean=(float('inf'),))
for bad, name in ((float('nan'), 'fnan'), (float('inf'), 'finf')):
    d = np.ones((2, 1, 4, 4), np.float32); d[1, 0, 2, 3] = bad
    mk(name, [1, 4, 4], ftype='f4', data=d)
PY

job() { cat >"$T/$1.toml" <<EOF2
name = "v_$1"
[data]
train = "$T/$1.h5"
test = "$T/$1.h5"
[model]
[[model.layers]]
type = "dense"
units = 10
[train]
epochs = 1
batch_size = 2
loss = "cross_entropy"
[optimizer]
type = "adam"
lr = 0.001
[checkpoint]
every_epochs = 0
[run]
dir = "$T/run_$1"
EOF2
}

# The good shard trains (so the failures below are about the shards).
job ok
"$NNTRAIN" "$T/ok.toml" >/dev/null 2>"$T/se" || fail "ok shard: $(cat "$T/se")"

for s in huge huge2; do
  expect_fail 4 "$T/$s.h5: attribute 'sample_shape'" "$NNTRAIN" inspect "$T/$s.h5"
  job $s
  expect_fail 4 "$T/$s.h5: attribute 'sample_shape'" "$NNTRAIN" "$T/$s.toml"
  "$NNTRAIN" check "$T/$s.toml" >"$T/so" 2>"$T/se"; rc=$?
  [ "$rc" = 4 ] || fail "check $s exited $rc, expected 4: $(cat "$T/se")"
  grep -q "$T/$s.h5: .*attribute 'sample_shape'" "$T/se" || fail "check $s: $(cat "$T/se")"
  grep -qE -- "parameters|-[0-9]" "$T/so" && fail "check $s printed a size: $(cat "$T/so")"
done

expect_fail 4 "attribute 'mean' has 2 values" "$NNTRAIN" inspect "$T/meanlen.h5"
expect_fail 4 "attribute 'std' has 2 values" "$NNTRAIN" inspect "$T/stdlen.h5"
expect_fail 4 "attribute 'std' value 0 is -1" "$NNTRAIN" inspect "$T/stdneg.h5"
expect_fail 4 "attribute 'std' value 0 is nan" "$NNTRAIN" inspect "$T/stdnan.h5"
expect_fail 4 "attribute 'mean' value 0 is inf" "$NNTRAIN" inspect "$T/meaninf.h5"
"$NNTRAIN" inspect "$T/stdzero.h5" >/dev/null 2>"$T/se" || fail "std 0 refused: $(cat "$T/se")"
job stdneg
expect_fail 4 "$T/stdneg.h5: attribute 'std'" "$NNTRAIN" "$T/stdneg.toml"

for s in fnan finf; do
  job $s
  expect_fail 4 "$T/$s.h5: /features row 1 element 11" "$NNTRAIN" "$T/$s.toml"
  # At -np 2 the row is rank 1's: every rank stops cleanly (no MPI abort
  # banner; tests/e2e_rank_failure.sh covers this in depth), exit 4 with the
  # file and row.
  timeout 120 mpirun --oversubscribe -np 2 "$NNTRAIN" "$T/$s.toml" >/dev/null 2>"$T/se"; rc=$?
  [ "$rc" = 4 ] || fail "-np 2 $s exited $rc, expected 4: $(cat "$T/se")"
  grep -q "$T/$s.h5: /features row 1 element 11" "$T/se" || fail "-np 2 $s: $(cat "$T/se")"
  grep -q "MPI_ABORT" "$T/se" && fail "-np 2 $s: MPI_ABORT banner: $(cat "$T/se")"
done
echo PASS
