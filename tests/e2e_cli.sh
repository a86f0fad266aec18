#!/usr/bin/env bash
# The command front end: --help and --version, help for every command, usage
# errors exit 2 with one line, the progress bar when forced on.
set -uo pipefail
: "${NNTRAIN:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0
check() { # check WANT_RC NAME CMD...: run, compare the exit code
  local want=$1 name=$2; shift 2
  "$@" >"$T/o" 2>"$T/e"; local rc=$?
  if [ "$rc" -ne "$want" ]; then
    echo "FAIL: $name: exit $rc, want $want"; cat "$T/o" "$T/e"; fail=1
  fi
}

check 0 "--help" "$NNTRAIN" --help
grep -q "usage: nntrain" "$T/o" || { echo "FAIL: --help text"; fail=1; }
grep -q "Exit codes" "$T/o" || { echo "FAIL: --help lacks exit codes"; fail=1; }
check 0 "--version" "$NNTRAIN" --version
grep -qE '^nntrain [0-9]+\.[0-9]+\.[0-9]+$' "$T/o" || { echo "FAIL: --version: $(cat "$T/o")"; fail=1; }
for c in train check prepare inspect bench; do
  check 0 "$c --help" "$NNTRAIN" "$c" --help
  grep -qi "usage" "$T/o" || { echo "FAIL: $c --help has no usage line"; fail=1; }
done
check 2 "no arguments" "$NNTRAIN"
check 2 "unknown command" "$NNTRAIN" frobnicate
[ "$(wc -l < "$T/e")" -eq 1 ] || { echo "FAIL: unknown command: not one line"; fail=1; }
check 2 "unknown option" "$NNTRAIN" --frob
check 2 "train: unknown flag" "$NNTRAIN" train x.toml --frob
check 2 "train: no job" "$NNTRAIN" train
check 2 "train: bad --steps" "$NNTRAIN" train x.toml --steps -3
check 3 "train: missing job file" "$NNTRAIN" "$T/none.toml"
grep -q "none.toml" "$T/e" || { echo "FAIL: missing job file not named"; fail=1; }
[ "$(wc -l < "$T/e")" -eq 1 ] || { echo "FAIL: missing job file: not one line"; cat "$T/e"; fail=1; }

# The progress bar, forced on (stderr is not a terminal here).
/usr/bin/python3 - "$T" <<'PY'
import random, sys
random.seed(2)
with open(sys.argv[1] + "/d.csv", "w") as f:
    for i in range(600):
        x = [random.uniform(-1, 1) for _ in range(4)]
        f.write("%f,%f,%f,%f,%d\n" % (*x, int(x[0] > 0)))
PY
"$NNTRAIN" prepare csv "$T/d.csv" --label 4 --classes 2 --out "$T/d" >/dev/null || fail=1
printf '[data]\ntrain = "%s/d/train-*.h5"\n[model]\n[[model.layers]]\ntype = "dense"\nunits = 2\n[train]\nepochs = 2\nbatch_size = 50\n[run]\ndir = "%s/run"\n' "$T" "$T" > "$T/j.toml"
check 0 "train --progress" "$NNTRAIN" "$T/j.toml" --progress
grep -q "epoch 2/2 \[" "$T/e" || { echo "FAIL: no progress bar on stderr"; cat "$T/e"; fail=1; }
grep -q "^epoch 2/2  loss" "$T/o" || { echo "FAIL: no epoch line"; cat "$T/o"; fail=1; }
check 0 "train --no-progress" "$NNTRAIN" "$T/j.toml" --no-progress
grep -q "\[" "$T/e" && { echo "FAIL: progress bar despite --no-progress"; fail=1; }
[ "$(grep -c '"epoch"' "$T/run/metrics.jsonl")" -eq 4 ] || { echo "FAIL: metrics.jsonl should hold 4 epoch records (2 runs appended)"; fail=1; }
[ $fail -eq 0 ] && echo "e2e_cli: all checks passed"
exit $fail
