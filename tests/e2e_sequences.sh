#!/usr/bin/env bash
# e2e_sequences.sh: sequence data end to end (issue 12, docs/data-format.md#sequences).
#
# 1. `prepare lines` on three small generated word files: tokens are the
#    UTF-8 bytes + 1 (checked against the words with h5py), lowercase (also
#    non-ASCII: "ÄPFEL" -> "äpfel"), duplicates removed, words shared between
#    files dropped from all, items over --max-len dropped, --per-class and
#    --test-fraction obeyed, padding 0 after each length, classes.txt names
#    the files, and the same flags give the same shards.
# 2. Bad input: one file (exit 2), a missing file (exit 4 naming it), a
#    sequence shard with a token id outside the vocabulary or a bad length
#    (written by h5py behind the writer's back): inspect/check exit 4 with one
#    line naming the file and row.
set -u
NNTRAIN=${NNTRAIN:?NNTRAIN must name the nntrain binary}
T=$(mktemp -d /tmp/nn_e2e_seq_XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # PY, fail, expect_fail
need_py h5py numpy

printf 'Apple\napple\nbanana\ncherry\nshared\ndate\nelderberry-is-long\nfig\ngrape\n' >"$T/en.txt"
printf 'ÄPFEL\nbirne\nkirsche\nshared\ndattel\nfeige\ntraube\n\nzitrone\n' >"$T/de.txt"
printf 'pomme\r\npoire\r\ncerise\r\nshared\r\ndatte\r\nfigue\r\nraisin\r\n' >"$T/fr.txt"

"$NNTRAIN" prepare lines "$T/en.txt" "$T/de.txt" "$T/fr.txt" --out "$T/w" --per-class 5 \
  --test-fraction 0.4 --max-len 10 --seed 3 >"$T/out" 2>&1 || fail "prepare lines: $(cat "$T/out")"
grep -q "class 0 en.txt: 9 lines, 1 duplicates, 1 longer than 10 bytes, 1 in other files; 3 train, 2 test" "$T/out" ||
  fail "prepare lines: class 0 summary: $(cat "$T/out")"
[ "$(cat "$T/w/classes.txt")" = "$(printf 'en.txt\nde.txt\nfr.txt')" ] || fail "classes.txt: $(cat "$T/w/classes.txt")"
"$PY" - "$T/w" <<'EOF' || fail "prepare lines: shard contents"
import sys, h5py, numpy as np
d = sys.argv[1]
words = {0: {"apple", "banana", "cherry", "date", "fig", "grape"},
         1: {"äpfel", "birne", "kirsche", "dattel", "feige", "traube", "zitrone"},
         2: {"pomme", "poire", "cerise", "datte", "figue", "raisin"}}
seen = {}
for split, per in (("train", 3), ("test", 2)):
    f = h5py.File("%s/%s-000.h5" % (d, split), "r")
    assert f.attrs["vocab_size"] == 257
    x, n, y = f["features"][()], f["lengths"][()], f["labels"][()]
    assert x.dtype == np.int32 and x.shape[1] == 10, x.shape
    assert list(np.bincount(y, minlength=3)) == [per] * 3, np.bincount(y)
    for row, length, c in zip(x, n, y):
        assert (row[length:] == 0).all(), row
        w = bytes(int(v) - 1 for v in row[:length]).decode("utf-8")
        assert w in words[c], (w, c)
        assert w not in seen, w
        seen[w] = split
assert "shared" not in seen and "elderberry-is-long" not in seen
EOF
"$NNTRAIN" prepare lines "$T/en.txt" "$T/de.txt" "$T/fr.txt" --out "$T/w2" --per-class 5 \
  --test-fraction 0.4 --max-len 10 --seed 3 >/dev/null 2>&1 || fail "prepare lines again"
"$PY" - "$T/w" "$T/w2" <<'EOF' || fail "prepare lines: the same flags gave other shards"
import sys, h5py, numpy as np
for s in ("train", "test"):
    a, b = (h5py.File("%s/%s-000.h5" % (d, s), "r") for d in sys.argv[1:])
    for k in ("features", "lengths", "labels"):
        assert (a[k][()] == b[k][()]).all(), (s, k)
EOF
"$NNTRAIN" inspect "$T/w/train-000.h5" | grep -q "int32 token ids, vocabulary 257" ||
  fail "inspect does not show the token type"
echo "prepare lines: contents, filters, determinism"

# ---- prepare text: one token stream --------------------------------------------------
printf 'Hello, world.\n%%\n' >"$T/a.txt"
printf 'Zweite Datei: \xc3\xa4\xc3\xb6\xc3\xbc.\n' >"$T/b.txt"
head -c 3000 /dev/urandom | base64 >"$T/c.txt"
"$NNTRAIN" prepare text "$T/a.txt" "$T/b.txt" "$T/c.txt" --out "$T/s" --row-len 16 \
  --val-fraction 0.1 >"$T/out" 2>&1 || fail "prepare text: $(cat "$T/out")"
"$PY" - "$T/s" "$T/a.txt" "$T/b.txt" "$T/c.txt" <<'EOF' || fail "prepare text: stream contents"
import sys, h5py, numpy as np
d, files = sys.argv[1], sys.argv[2:]
text = b"".join(open(p, "rb").read() for p in files)
got = b""
for split in ("train", "validation"):
    f = h5py.File("%s/%s-000.h5" % (d, split), "r")
    assert f.attrs["stream"] == 1 and f.attrs["vocab_size"] == 257
    assert "labels" not in f and "targets" not in f
    x, n = f["features"][()], f["lengths"][()]
    assert (n[:-1] == 16).all() and 1 <= n[-1] <= 16, n
    part = bytes(int(v) - 1 for row, k in zip(x, n) for v in row[:k])
    if split == "validation":
        assert len(part) == int(len(text) * 0.1), (len(part), len(text))
    got += part
assert got == text
EOF
"$NNTRAIN" inspect "$T/s/train-000.h5" | grep -q "the next token" || fail "inspect: stream"
cat >"$T/lm.toml" <<EOF2
[data]
train = "$T/s/train-*.h5"
[model]
[[model.layers]]
type = "dense"
units = 4
[run]
dir = "$T/runlm"
EOF2
expect_fail 3 "one token stream" "$NNTRAIN" check "$T/lm.toml"
echo "prepare text: one stream, exact bytes, supervised training refused"

# ---- bad input --------------------------------------------------------------------
expect_fail 2 "at least two FILEs" "$NNTRAIN" prepare lines "$T/en.txt" --out "$T/x"
expect_fail 4 "nope.txt" "$NNTRAIN" prepare lines "$T/en.txt" "$T/nope.txt" --out "$T/x"
cp "$T/w/train-000.h5" "$T/badid.h5"
"$PY" -c "import h5py,sys; f=h5py.File(sys.argv[1],'r+'); f['features'][4,0]=300" "$T/badid.h5"
cat >"$T/job.toml" <<EOF2
[data]
train = "$T/badid.h5"
normalize = false
[model]
[[model.layers]]
type = "dense"
units = 4
[[model.layers]]
type = "dense"
units = 3
[train]
epochs = 1
batch_size = 4
[checkpoint]
every_epochs = 0
at_end = false
[run]
dir = "$T/run"
EOF2
expect_fail 4 "badid.h5: /features row 4 element 0 is token id 300, outside the vocabulary [0, 257)" \
  "$NNTRAIN" "$T/job.toml" --quiet
cp "$T/w/train-000.h5" "$T/badlen.h5"
"$PY" -c "import h5py,sys; f=h5py.File(sys.argv[1],'r+'); f['lengths'][2]=11" "$T/badlen.h5"
expect_fail 4 "badlen.h5: /lengths row 2 is 11, expected 1 to 10" "$NNTRAIN" inspect "$T/badlen.h5"
echo "bad sequence input: one line, exit 2 or 4"
# ---- a class per timestep (taggers): /labels [N, T] ----------------------------------
# Tag every byte of a word: 1 for a vowel, 0 otherwise (written with h5py as
# docs/data-format.md shows); a bidirectional GRU learns it at -np 2 and 3.
"$PY" - "$T/tag" <<'PYEOF' || fail "tagger shards"
import os, random, sys, h5py, numpy as np
out = sys.argv[1]; os.makedirs(out)
random.seed(2)
T = 12
def shard(path, n, split):
    ids = np.zeros((n, T), np.int32); lab = np.full((n, T), -1, np.int32); ln = np.zeros(n, np.int32)
    for i in range(n):
        w = "".join(random.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(random.randint(2, T)))
        ln[i] = len(w)
        for t, ch in enumerate(w.encode()):
            ids[i, t] = ch + 1
            lab[i, t] = 1 if chr(ch) in "aeiou" else 0
    with h5py.File(path, "w") as f:
        f["features"], f["lengths"], f["labels"] = ids, ln, lab
        a = f.attrs
        a["format"], a["version"], a["sample_shape"] = "nntrain-shard", np.int32(1), np.int32([T])
        a["num_classes"], a["feature_scale"], a["vocab_size"] = np.int32(2), 1.0, np.int32(257)
        a["mean"], a["std"] = np.zeros(T), np.ones(T)
        a["split"], a["source"] = split, "vowels"
        a["shard_index"], a["shard_count"], a["num_samples"] = np.int32(0), np.int32(1), np.int64(n)
shard(out + "/train-000.h5", 1200, "train")
shard(out + "/test-000.h5", 300, "test")
PYEOF
cat >"$T/tag.toml" <<EOF2
[data]
train = "$T/tag/train-*.h5"
test = "$T/tag/test-*.h5"
normalize = false
[model]
[[model.layers]]
type = "embedding"
num_embeddings = 257
embedding_dim = 8
padding_idx = 0
[[model.layers]]
type = "gru"
hidden_size = 16
bidirectional = true
[[model.layers]]
type = "dense"
units = 2
per_timestep = true
[train]
epochs = 6
batch_size = 24
seed = 5
[optimizer]
type = "adam"
lr = 0.01
[run]
dir = "$T/tagrun"
EOF2
"$NNTRAIN" inspect "$T/tag/train-000.h5" >/dev/null || fail "inspect: tagger shard"
for np in 2 3; do
  rm -rf "$T/tagrun"
  timeout 120 mpirun --oversubscribe -np $np "$NNTRAIN" "$T/tag.toml" --quiet \
    --dump-params "$T/tp$np" >"$T/out" 2>&1 || fail "tagger at -np $np: $(cat "$T/out")"
done
"$PY" - "$T/tagrun/metrics.jsonl" "$T/tp2" "$T/tp3" <<'PYEOF' || fail "tagger: figures"
import array, json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
last = [r for r in recs if "test_accuracy" in r][-1]
print("tagger: test accuracy per token %.4f" % last["test_accuracy"])
assert last["test_accuracy"] > 0.97, last      # vowels are easy; chance is ~0.6
def load(p):
    a = array.array("f"); a.frombytes(open(p, "rb").read()); return a
d = max(abs(x - y) for x, y in zip(load(sys.argv[2]), load(sys.argv[3])))
print("tagger: max |np2 - np3| = %g" % d)
assert d < 1e-4
PYEOF
sed 's/^per_timestep = true$/per_timestep = false/' "$T/tag.toml" >"$T/tagbad.toml"
expect_fail 3 "a class per timestep" "$NNTRAIN" check "$T/tagbad.toml"
"$PY" -c "import h5py,sys; f=h5py.File(sys.argv[1],'r+'); f['labels'][3,0]=5" "$T/tag/test-000.h5"
expect_fail 4 "test-000.h5: /labels row 3 step 0: label 5" "$NNTRAIN" inspect "$T/tag/test-000.h5"
echo "a class per timestep: trained at -np 2 and 3 (same to rounding), refusals"

echo "e2e_sequences: all checks passed"
