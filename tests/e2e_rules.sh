#!/usr/bin/env bash
# One rule set: `nntrain check`, training and `nntrain eval` accept and refuse
# the same model/data pairs (coordinator/run/replica.h). Each row of the
# table is a model (last layer's units, loss, input shape) and the data it
# meets; eval gets a checkpoint of that model trained on data it fits and is
# asked to evaluate the row's data. Train and eval run at -np 2.
set -uo pipefail
: "${NNTRAIN:?}"
. "$(dirname "$0")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
MPI="mpirun -np 2 --oversubscribe"

# name features kind(classes N | reg)
mk() {
  "$PY" - "$T/$1.csv" "$2" "$3" <<'PY'
import random, sys
path, nf, kind = sys.argv[1], int(sys.argv[2]), sys.argv[3]
random.seed(nf)
with open(path, "w") as f:
    f.write(",".join("f%d" % i for i in range(nf)) + ",y\n")
    for i in range(64):
        x = [random.uniform(-1, 1) for _ in range(nf)]
        y = "%.4f" % sum(x) if kind == "reg" else str(i % int(kind))
        f.write(",".join("%.4f" % v for v in x) + "," + y + "\n")
PY
  if [ "$3" = reg ]; then
    "$NNTRAIN" prepare csv "$T/$1.csv" --label y --regression --out "$T/$1" >/dev/null
  else
    "$NNTRAIN" prepare csv "$T/$1.csv" --label y --classes "$3" --out "$T/$1" >/dev/null
  fi || fail "prepare $1"
}
mk cls3 6 3; mk cls4 6 4; mk cls2 6 2; mk reg 6 reg; mk cls3f5 5 3

job() { # units loss input_shape(TOML array or "") -> $T/job.toml
  {
    echo 'name = "rules"'
    echo '[data]'
    echo "train = \"$T/cls3/train-*.h5\""
    echo '[model]'
    [ -n "$3" ] && echo "input_shape = $3"
    printf '[[model.layers]]\ntype = "flatten"\n[[model.layers]]\ntype = "dense"\nunits = 8\nactivation = "relu"\n'
    printf '[[model.layers]]\ntype = "dense"\nunits = %s\n' "$1"
    printf '[train]\nepochs = 1\nbatch_size = 8\nloss = "%s"\n[run]\ndir = "%s/run"\n' "$2" "$T"
  } > "$T/job.toml"
}

# verdict CMD...: "ok" if it exits 0, else "refused" (one stderr line required)
verdict() {
  "$@" >"$T/so" 2>"$T/se"
  local rc=$?
  if [ $rc = 0 ]; then echo ok; return; fi
  [ "$(grep -vc '^--\|^\s*$\|mpirun\|^Primary job\|^$' "$T/se")" -ge 1 ] || fail "'$*' exited $rc silently"
  grep -q "Segmentation\|Abort\|MPI_ABORT" "$T/se" && fail "'$*' crashed: $(cat "$T/se")"
  echo "refused($rc)"
}

n=0
# units loss input_shape data ckpt_data expected
while read -r units loss shape data ckdata want <&3; do
  [ "$shape" = "-" ] && shape=""
  job "$units" "$loss" "$shape"
  D="data.train=\"$T/$data/train-*.h5\""
  c=$(verdict "$NNTRAIN" check "$T/job.toml" --set "$D")
  rm -rf "$T/run"
  t=$(verdict $MPI "$NNTRAIN" "$T/job.toml" --set "$D" --no-progress --quiet)
  rm -rf "$T/run"
  $MPI "$NNTRAIN" "$T/job.toml" --set "data.train=\"$T/$ckdata/train-*.h5\"" --no-progress \
    --quiet >/dev/null 2>"$T/ck.err" || fail "row $n: training the checkpoint on $ckdata: $(cat "$T/ck.err")"
  ck=$(ls "$T"/run/checkpoints/*.h5 | tail -1)
  e=$(verdict $MPI "$NNTRAIN" eval "$ck" "$T/$data/train-*.h5")
  echo "row $n: units=$units loss=$loss input_shape=${shape:-data} data=$data: check $c, train $t, eval $e"
  for v in "$c" "$t" "$e"; do
    [ "${v%%(*}" = "$want" ] || fail "row $n: expected $want from check, train and eval"
  done
  [ "$want" = ok ] || { [ "$c" = "refused(3)" ] && [ "$t" = "refused(3)" ] && [ "$e" = "refused(4)" ]; } ||
    fail "row $n: refusals exit 3 (check, train: the job) and 4 (eval: the data)"
  n=$((n + 1))
done 3<<'ROWS'
3 cross_entropy - cls3 cls3 ok
3 mse - cls3 cls3 ok
4 cross_entropy - cls3 cls4 refused
1 mse - reg reg ok
2 cross_entropy - reg cls2 refused
2 mse - reg cls2 refused
3 cross_entropy [2,3] cls3 cls3 ok
3 cross_entropy [5] cls3 cls3f5 refused
ROWS
[ $n = 8 ] || fail "ran $n rows"
echo "e2e_rules: $n rows agree"
