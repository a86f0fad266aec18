#!/usr/bin/env bash
# `nntrain graph` over every example job (jobs/*.toml): the Fashion-MNIST ones on a small
# real subset (tests/lib.sh fm_idx), the text ones (whose corpora are optional) on
# model.input_shape. For each, the .dot has one node per layer of `nntrain check`'s
# table plus one input node per replica, and every layer's incoming edges are exactly
# the inputs check lists (so a ResNet add has its 2, an inception concat its 4); the .svg
# parses as XML and shows every layer name; the .png has the PNG signature. Then a
# checkpoint's graph, and the bad inputs: one stderr line each, README exit codes.
set -uo pipefail   # not -e: expect_fail runs commands that must fail
: "${NNTRAIN:?}" "${NN_SOURCE_DIR:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # PY, fail, skip, expect_fail, fm_idx

fm_idx train 0 600 "$T/train" || fail "fm_idx"
"$NNTRAIN" prepare idx "$T/train-img" "$T/train-lab" --out "$T/d" --split train >/dev/null || fail "prepare idx"
# the transfer-learning pair reads five classes (docs/finetuning.md)
"$NNTRAIN" prepare fashion-mnist --out "$T/d5" --classes 0,1,2,3,4 --limit 300 >/dev/null ||
  fail "prepare fashion-mnist --classes"

# compare CHECK_OUT DOT SVG PNG JOB: the graph against check's table
compare() {
  "$PY" - "$@" <<'PY'
import re, sys, xml.etree.ElementTree as ET
check, dot, svg, png, job = sys.argv[1:6]
# check's table: per replica ("replica NAME:" headings for several), rows
# "index name type [shape] params inputs"
reps, cur = {}, ""
row = re.compile(r"^\s*(\d+)\s+(\S+)\s+(\S+)\s+(\[[^\]]*\])\s+(\d+)\s*(.*)$")
for line in open(check):
    m = re.match(r"^replica (\S+):$", line.strip())
    if m:
        cur = m.group(1)
        continue
    m = row.match(line.rstrip("\n"))
    if m:
        ins = m.group(6).replace("(frozen)", "").strip()
        reps.setdefault(cur, []).append((m.group(2), [s.strip() for s in ins.split(",") if s.strip()]))
assert reps, "%s: no layer rows in check's output" % job
multi = len(reps) > 1
def nid(rep, name):
    return "%s/%s" % (rep, name) if multi else name
# the .dot as cgraph writes it: node statements "ID [attrs]" (attributes may run over
# several lines), edge statements "A -> B [attrs]"
text = open(dot).read()
ID = r'("(?:[^"\\]|\\.)*"|[A-Za-z_0-9.]+)'
unq = lambda s: s[1:-1] if s.startswith('"') else s
edges = {}
for a, b in re.findall(r"^\s*" + ID + r"\s*->\s*" + ID, text, re.M):
    edges.setdefault(unq(b), []).append(unq(a))
nodes = set()
for m in re.finditer(r"^\s*" + ID + r"\s*\[", text, re.M):
    n = unq(m.group(1))
    if n not in ("graph", "node", "edge"):
        nodes.add(n)
want = set()
nlayers = 0
for rep, rows in reps.items():
    want.add(nid(rep, "input"))
    for name, ins in rows:
        nlayers += 1
        want.add(nid(rep, name))
        got = sorted(edges.get(nid(rep, name), []))
        exp = sorted(nid(rep, i) for i in ins)
        assert got == exp, "%s: layer %s: edges from %s, check lists %s" % (job, name, got, exp)
assert nodes == want, "%s: dot nodes %d (%s), expected %d layers + %d inputs" % (
    job, len(nodes), sorted(nodes ^ want), nlayers, len(reps))
nedges = sum(len(v) for v in edges.values())
# the .svg: XML whose text shows every layer's name
texts = set(t.text for t in ET.parse(svg).iter() if t.tag.endswith("text") and t.text)
missing = [n for rows in reps.values() for n, _ in rows if n not in texts]
assert not missing, "%s: svg lacks layer names %s" % (job, missing[:5])
sig = open(png, "rb").read(8)
assert sig == b"\x89PNG\r\n\x1a\n", "%s: png signature %r" % (job, sig)
merges = sum(1 for rows in reps.values() for _, ins in rows if len(ins) > 1)
print("%s: %d layers, %d edges, %d merges%s" % (job, nlayers, nedges, merges,
      ", replicas " + " ".join(reps) if multi else ""))
PY
}

njobs=0
for jf in "$NN_SOURCE_DIR"/jobs/*.toml; do
  job=$(basename "$jf" .toml)
  case "$job" in
    fashion_mnist_pretrain|fashion_mnist_finetune)
       sets=(--set data.train="\"$T/d5/train-*.h5\"" --set data.test="\"\"") ;;
    fashion_mnist_*) sets=(--set data.train="\"$T/d/train-*.h5\"" --set data.test="\"\"") ;;
    *) echo "$job: its corpus is not installed here: the graph for model.input_shape = [32]"
       sets=(--set data.train="\"$T/none-*.h5\"" --set data.test="\"\"" --set "model.input_shape=[32]") ;;
  esac
  "$NNTRAIN" check "$jf" "${sets[@]}" >"$T/$job.check" || { cat "$T/$job.check"; fail "$job: check"; }
  for ext in dot svg png; do
    "$NNTRAIN" graph "$jf" "${sets[@]}" --out "$T/$job.$ext" >"$T/out" ||
      fail "$job: graph --out .$ext"
    [ -s "$T/$job.$ext" ] || fail "$job: $T/$job.$ext is empty"
  done
  compare "$T/$job.check" "$T/$job.dot" "$T/$job.svg" "$T/$job.png" "$job" || fail "$job: graph"
  njobs=$((njobs + 1))
done
[ "$njobs" -ge 12 ] || fail "only $njobs example jobs"
# the ResNet's residual adds each read two layers, the GAN has its two clusters
grep -q 'subgraph cluster_generator' "$T/fashion_mnist_gan.dot" || fail "gan: no generator cluster"
grep -q 'subgraph cluster_discriminator' "$T/fashion_mnist_gan.dot" || fail "gan: no discriminator cluster"
"$PY" - "$T/fashion_mnist_resnet.dot" <<'PY' || fail "resnet: the adds"
import re, sys
t = open(sys.argv[1]).read()
adds = re.findall(r'^\s*("?[\w.]+"?)\s*\[label="[^"]*\\nadd\\n', t, re.M)
assert len(adds) >= 3, adds
for a in adds:
    n = len(re.findall(r"->\s*" + re.escape(a) + r"\s*[;\[]", t))
    assert n == 2, "%s has %d inputs" % (a, n)
print("resnet: %d adds with 2 inputs each" % len(adds))
PY

# ---- a checkpoint: the same graph from its job spec ------------------------------------
"$NNTRAIN" "$NN_SOURCE_DIR/jobs/fashion_mnist_mlp.toml" --quiet --set train.epochs=1 \
  --set data.train="\"$T/d/train-*.h5\"" --set data.test="\"\"" --set run.dir="\"$T/run\"" ||
  fail "training the MLP"
CK=$(ls "$T"/run/checkpoints/step-*.h5 | tail -1)
[ -n "$CK" ] && [ -f "$CK" ] || fail "no checkpoint"
"$NNTRAIN" graph "$CK" --data "$T/d/train-*.h5" --out "$T/ck.dot" >/dev/null || fail "graph CKPT"
"$NNTRAIN" graph "$CK" --data "$T/d/train-*.h5" --out "$T/ck.svg" >/dev/null || fail "graph CKPT svg"
"$NNTRAIN" graph "$CK" --data "$T/d/train-*.h5" --out "$T/ck.png" >/dev/null || fail "graph CKPT png"
compare "$T/fashion_mnist_mlp.check" "$T/ck.dot" "$T/ck.svg" "$T/ck.png" checkpoint ||
  fail "checkpoint graph"

# ---- bad input: one line, README exit codes --------------------------------------------
J="$NN_SOURCE_DIR/jobs/fashion_mnist_mlp.toml"
D=(--set data.train="\"$T/d/train-*.h5\"")
expect_fail 2 "unknown extension" "$NNTRAIN" graph "$J" "${D[@]}" --out "$T/m.jpg"
expect_fail 2 "missing --out" "$NNTRAIN" graph "$J" "${D[@]}"
expect_fail 2 "unknown option" "$NNTRAIN" graph "$J" --bogus --out "$T/m.dot"
expect_fail 2 "--set applies to job files" "$NNTRAIN" graph "$CK" --set a.b=1 --out "$T/m.dot"
expect_fail 4 "$T/nodir/m.svg" "$NNTRAIN" graph "$J" "${D[@]}" --out "$T/nodir/m.svg"
expect_fail 4 "$T/nodir/m.dot" "$NNTRAIN" graph "$J" "${D[@]}" --out "$T/nodir/m.dot"
expect_fail 3 "$T/none.toml" "$NNTRAIN" graph "$T/none.toml" --out "$T/m.dot"
printf 'name = "x"\n[model\n' >"$T/bad.toml"
expect_fail 3 "bad.toml:2" "$NNTRAIN" graph "$T/bad.toml" --out "$T/m.dot"
expect_fail 4 "no files match" "$NNTRAIN" graph "$J" --set data.train="\"$T/none-*.h5\"" \
  --out "$T/m.dot"
echo junk >"$T/bad.h5"
expect_fail 5 "bad.h5" "$NNTRAIN" graph "$T/bad.h5" --out "$T/m.dot"
[ ! -e "$T/m.dot" ] || fail "a failed graph left $T/m.dot"
echo "e2e_graph: all checks passed"
