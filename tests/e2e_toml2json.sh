#!/usr/bin/env bash
# e2e_toml2json.sh: conformance check of the TOML parser through tests/tools/toml2json.
# Every tests/toml/valid/*.toml must convert to JSON equal (semantically, key
# order ignored, floats compared as numbers, date-times as instants-as-written)
# to the .json next to it; every tests/toml/invalid/*.toml must exit 1 with a
# "<stdin>:line:col: message" error on stderr.
set -u
SRC=${NN_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
T=${TOML2JSON:-}
if [ -z "$T" ]; then T=${NN_BUILD_DIR:-$SRC/build}/tests/toml2json; fi
if [ ! -x "$T" ]; then echo "toml2json not found at '$T'"; exit 1; fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

CMP="$TMP/cmp.py"
cat > "$CMP" <<'PY'
import json, math, re, sys
def norm_dt(s):
    # 1979-05-27 07:32:00.500z -> 1979-05-27T07:32:00.5+00:00
    s = s.upper().replace(" ", "T")
    s = re.sub(r"Z$", "+00:00", s)
    s = re.sub(r"(\.\d*?)0+(?=$|[+-])", r"\1", s)
    s = re.sub(r"\.(?=$|[+-])", "", s)
    return s
def leaf_eq(a, b):
    if a["type"] != b["type"]: return False
    x, y = a["value"], b["value"]
    t = a["type"]
    if t == "float":
        fx, fy = float(x), float(y)
        if math.isnan(fx) or math.isnan(fy): return math.isnan(fx) and math.isnan(fy)
        return fx == fy and math.copysign(1, fx) == math.copysign(1, fy)
    if t == "integer": return int(x) == int(y)
    if t.startswith("date") or t.startswith("time"): return norm_dt(x) == norm_dt(y)
    return x == y
def eq(a, b, path):
    if isinstance(a, dict) and set(a.keys()) == {"type", "value"} and isinstance(a.get("value"), str):
        if not (isinstance(b, dict) and set(b.keys()) == {"type", "value"} and leaf_eq(a, b)):
            sys.exit("mismatch at %s: got %r, expected %r" % (path or "/", a, b))
        return
    if isinstance(a, dict) != isinstance(b, dict) or isinstance(a, list) != isinstance(b, list):
        sys.exit("mismatch at %s: got %r, expected %r" % (path or "/", a, b))
    if isinstance(a, dict):
        if set(a) != set(b): sys.exit("keys differ at %s: got %s, expected %s" % (path or "/", sorted(a), sorted(b)))
        for k in a: eq(a[k], b[k], path + "/" + k)
    else:
        if len(a) != len(b): sys.exit("array length differs at %s: %d vs %d" % (path, len(a), len(b)))
        for i, (x, y) in enumerate(zip(a, b)): eq(x, y, "%s[%d]" % (path, i))
# argv: pairs of (got.json, expected.json); report every mismatching pair.
bad = 0
for got, exp in zip(sys.argv[1::2], sys.argv[2::2]):
    try:
        eq(json.load(open(got)), json.load(open(exp)), "")
    except SystemExit as e:
        print("FAIL %s: %s" % (exp, e)); bad = 1
sys.exit(bad)
PY

fail=0; nv=0; ni=0; pairs=()
for f in "$SRC"/tests/toml/valid/*.toml; do
  nv=$((nv + 1))
  out="$TMP/$(basename "${f%.toml}").json"
  if ! "$T" < "$f" > "$out" 2> "$TMP/err"; then
    echo "FAIL valid/$(basename "$f"): rejected: $(cat "$TMP/err")"; fail=1; continue
  fi
  pairs+=("$out" "${f%.toml}.json")
done
if [ ${#pairs[@]} -gt 0 ] && ! python3 "$CMP" "${pairs[@]}"; then fail=1; fi
for f in "$SRC"/tests/toml/invalid/*.toml; do
  ni=$((ni + 1))
  "$T" < "$f" > /dev/null 2> "$TMP/err"; rc=$?
  if [ $rc -ne 1 ]; then
    echo "FAIL invalid/$(basename "$f"): exit $rc, expected 1"; fail=1; continue
  fi
  if ! grep -Eq '^<stdin>:[0-9]+:[0-9]+: .+' "$TMP/err"; then
    echo "FAIL invalid/$(basename "$f"): error lacks line:col: $(cat "$TMP/err")"; fail=1
  fi
done
if [ $nv -lt 1 ] || [ $ni -lt 1 ]; then echo "FAIL: no fixtures found"; fail=1; fi
echo "toml2json: $nv valid and $ni invalid fixtures checked"
exit $fail
