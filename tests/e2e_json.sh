#!/usr/bin/env bash
# metrics.jsonl stays valid JSON for any job name and run directory: quotes,
# backslashes, control characters and non-ASCII in both; every line parses
# with a strict parser (NaN/Infinity refused) and the name round-trips.
# Runs at -np 2.
set -uo pipefail
: "${NNTRAIN:?}"
. "$(dirname "$0")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
"$PY" - "$T/d.csv" <<'PY'
import random, sys
random.seed(3)
with open(sys.argv[1], "w") as f:
    f.write("a,b,c,y\n")
    for i in range(96):
        x = [random.uniform(-1, 1) for _ in range(3)]
        f.write("%.4f,%.4f,%.4f,%d\n" % (x[0], x[1], x[2], int(x[0] + x[1] > 0)))
PY
"$NNTRAIN" prepare csv "$T/d.csv" --label y --classes 2 --out "$T/d" >/dev/null || fail prepare
RUN="$T/run \"q\" \\ é"
mkdir -p "$RUN"
cat > "$T/job.toml" <<EOF2
name = "a \"quoted\" \\\\ back\\\\slash \\u0001\\t ctl é €"
[data]
train = "$T/d/train-*.h5"
validation_split = 0.25
[model]
[[model.layers]]
type = "dense"
units = 2
[train]
epochs = 2
batch_size = 8
[run]
dir = '$RUN'
EOF2
mpirun -np 2 --oversubscribe "$NNTRAIN" "$T/job.toml" --no-progress >"$T/out" 2>&1 || fail "training: $(cat "$T/out")"
"$PY" - "$RUN/metrics.jsonl" <<'PY' || fail "metrics.jsonl is not strict JSON"
import json, sys
def no_const(c): raise ValueError("non-JSON constant " + c)
recs = [json.loads(l, parse_constant=no_const) for l in open(sys.argv[1], encoding="utf-8")]
start = [r for r in recs if r.get("event") == "start"][0]
want = 'a "quoted" \\ back\\slash \u0001\t ctl é €'
assert start["job"] == want, (start["job"], want)
epochs = [r for r in recs if "epoch" in r and "event" not in r]
assert len(epochs) == 2 and all("val_loss" in r for r in epochs), recs
print("metrics.jsonl: %d strict JSON records, job name round-trips" % len(recs))
PY
echo "e2e_json: ok"
