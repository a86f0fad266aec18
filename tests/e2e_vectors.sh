#!/usr/bin/env bash
# e2e_vectors.sh: pretrained embeddings (GloVe text format) end to end
# (issue 12; docs/finetuning.md, "Pretrained embeddings (GloVe)").
#
# 1. `prepare lines` on two generated word files gives the byte vocabulary
#    (vocab.txt); a generated GloVe-format file (printable characters, D = 8,
#    the job's embedding_dim; some tokens not in the vocabulary, one token
#    twice, a "<pad>" line) goes through `prepare vectors`: the found rows are
#    exactly the text's values (the first of a duplicate), the padding row
#    (the vocabulary's "<pad>") is zeros, the drawn rows have mean ~0 and the
#    std of the found values (stored as oov_std, recomputed here), found_rows
#    and the counts are right, and the summary line says so.
# 2. The same file with a word2vec header "COUNT DIM" and CRLF line ends gives
#    the identical table; the same --seed gives an identical file, another
#    seed other drawn rows and the same found rows; a plain one-token-per-line
#    vocabulary maps line i to id i.
# 3. A tiny GRU classifier with `[init] from` the file trains one epoch at
#    -np 2 and -np 3: with the embedding frozen its weight in the final
#    checkpoint equals the prepared file exactly; trainable, the found rows
#    of the bytes in the data move, every other row (found or drawn, never in
#    the data) keeps its value, the padding row stays zero, and -np 2 and 3
#    agree to rounding.
# 4. Errors, each one stderr line and the README's exit code: a ragged line
#    (FILE:LINE:COL, the expected count), a non-number and a non-finite value
#    (FILE:LINE:COL), a header whose DIM disagrees, a vocabulary with a
#    duplicate id or an id out of range (FILE:LINE), no token found (4), an
#    existing --out without --force and a --padding-idx outside the vocabulary
#    (2).
set -u
NNTRAIN=${NNTRAIN:?NNTRAIN must name the nntrain binary}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
T=$(mktemp -d /tmp/nn_e2e_vec_XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # PY, fail, expect_fail
need_py h5py numpy
MPI="timeout 300 mpirun --oversubscribe"

# ---- data: two "languages" over disjoint letters, and their byte vocabulary ----------
"$PY" - "$T" <<'PYEOF' || fail "word files"
import random, sys
random.seed(4)
for name, letters in (("l0", "abcdefghij"), ("l1", "klmnopqrst")):
    words = {"".join(random.choice(letters) for _ in range(random.randint(2, 8))) for _ in range(400)}
    open("%s/%s.txt" % (sys.argv[1], name), "w").write("\n".join(sorted(words)) + "\n")
PYEOF
"$NNTRAIN" prepare lines "$T/l0.txt" "$T/l1.txt" --out "$T/w" --max-len 8 >"$T/out" 2>&1 ||
  fail "prepare lines: $(cat "$T/out")"
[ -s "$T/w/vocab.txt" ] || fail "prepare lines wrote no vocab.txt"

# ---- a GloVe-format file: printable characters, D = 8 ----------------------------------
# found: a..t (in the data), x and y (in the vocabulary, never in the data),
# '#' and '\'; not in the vocabulary: "the", "<unk>", "zz"; 'c' twice (the
# first wins); "<pad>" (the padding row stays zeros whatever the file says).
"$PY" - "$T" <<'PYEOF' || fail "vectors file"
import random, sys
random.seed(11)
d = sys.argv[1]
toks = list("abcdefghijklmnopqrst") + ["the", "x", "<unk>", "c", "y", "#", "\\", "<pad>", "zz"]
lines = ["%s %s" % (t, " ".join("%.6f" % random.gauss(0.1, 0.5) for _ in range(8))) for t in toks]
open(d + "/glove.txt", "w").write("\n".join(lines) + "\n")
open(d + "/glove_w2v.txt", "w", newline="").write(
    "%d 8\r\n" % len(lines) + "\r\n".join(lines) + "\r\n")
PYEOF
"$NNTRAIN" prepare vectors "$T/glove.txt" --vocab "$T/w/vocab.txt" --layer emb --out "$T/e.h5" \
  --seed 7 >"$T/out" 2>"$T/err" || fail "prepare vectors: $(cat "$T/out" "$T/err")"
[ "$(wc -l <"$T/out")" = 1 ] && [ ! -s "$T/err" ] || fail "prepare vectors: expected one line: $(cat "$T/out" "$T/err")"
grep -qF "prepare vectors: 24 of 257 tokens found in $T/glove.txt (8 dims, 1 duplicates skipped); 232 rows drawn from N(0, s^2)" "$T/out" &&
  grep -qF "padding row 0 zeros; wrote $T/e.h5 /params/emb/weight [257, 8]" "$T/out" ||
  fail "prepare vectors: summary: $(cat "$T/out")"
cat "$T/out"
"$PY" - "$T/glove.txt" "$T/e.h5" <<'PYEOF' || fail "prepare vectors: the table"
import sys, h5py, numpy as np
first = {}
for line in open(sys.argv[1]):
    t, *v = line.split(" ")
    first.setdefault(t, np.array([np.float32(x) for x in v], np.float32))
f = h5py.File(sys.argv[2], "r")
w, found = f["params/emb/weight"][()], f["found_rows"][()]
a = f.attrs
assert w.dtype == np.float32 and w.shape == (257, 8), (w.dtype, w.shape)
assert (a["vocab_size"], a["dim"], a["tokens_found"], a["duplicates_skipped"], a["rows_drawn"],
        a["padding_idx"], a["seed"]) == (257, 8, 24, 1, 232, 0, 7), dict(a)
assert a["format"] == "nntrain-vectors" and a["layer"] == "emb", dict(a)
ids = {chr(b): b + 1 for b in range(33, 127)}   # vocab.txt: printable ASCII, id = byte + 1
want = {ids[t]: v for t, v in first.items() if t in ids}
assert sorted(want) == sorted(np.flatnonzero(found)), (sorted(want), np.flatnonzero(found))
for i, v in want.items():
    assert np.array_equal(w[i], v), (i, w[i], v)     # exactly the text's values
assert not w[0].any(), w[0]                           # "<pad>" (id 0): zeros
vals = np.concatenate([want[i] for i in sorted(want)]).astype(np.float64)
s = vals.std()
assert abs(a["oov_std"] - s) < 1e-6 * s, (a["oov_std"], s)
drawn = np.array([i for i in range(1, 257) if not found[i]])
x = w[drawn].astype(np.float64)
print("drawn rows: %d, mean %.4f, std %.4f (s = %.4f)" % (len(drawn), x.mean(), x.std(), s))
assert len(drawn) == 232 and abs(x.std() / s - 1) < 0.1 and abs(x.mean()) < 0.1 * s
assert len({r.tobytes() for r in w[drawn]}) == 232       # every drawn row its own
PYEOF
echo "prepare vectors: found rows exact, padding zeros, drawn rows N(0, s^2)"

# inspect describes the file from its attributes
"$NNTRAIN" inspect "$T/e.h5" >"$T/insp" 2>&1 || fail "inspect of a vectors file: $(cat "$T/insp")"
for want in "nntrain-vectors" "/params/emb/weight [257, 8] float32" "$T/glove.txt" \
            "24 of 257 (1 duplicate lines skipped)" "232 from N(0," "seed 7" "padding row    0 (zeros)"; do
  grep -qF -- "$want" "$T/insp" || fail "inspect of a vectors file lacks '$want': $(cat "$T/insp")"
done

# ---- the word2vec header and CRLF; seeds; a plain vocabulary ------------------------------
"$NNTRAIN" prepare vectors "$T/glove_w2v.txt" --vocab "$T/w/vocab.txt" --layer emb \
  --out "$T/e_w2v.h5" --seed 7 >/dev/null 2>&1 || fail "prepare vectors: word2vec header + CRLF"
"$NNTRAIN" prepare vectors "$T/glove.txt" --vocab "$T/w/vocab.txt" --layer emb \
  --out "$T/e_again.h5" --seed 7 >/dev/null 2>&1 || fail "prepare vectors again"
"$NNTRAIN" prepare vectors "$T/glove.txt" --vocab "$T/w/vocab.txt" --layer emb \
  --out "$T/e_s8.h5" --seed 8 >/dev/null 2>&1 || fail "prepare vectors --seed 8"
printf '<pad>\na\nb\n\nc\nz\n' >"$T/plain.txt"   # id 3: an empty line, no token; z: not in the file
"$NNTRAIN" prepare vectors "$T/glove.txt" --vocab "$T/plain.txt" --layer emb \
  --out "$T/e_plain.h5" >"$T/out" 2>&1 || fail "prepare vectors, plain vocabulary: $(cat "$T/out")"
grep -qF "3 of 6 tokens found" "$T/out" || fail "plain vocabulary: $(cat "$T/out")"
"$PY" - "$T" <<'PYEOF' || fail "prepare vectors: header, seeds, plain vocabulary"
import sys, h5py, numpy as np
d = sys.argv[1]
W = lambda n: h5py.File("%s/%s.h5" % (d, n), "r")["params/emb/weight"][()]
e, w2v, again, s8, plain = W("e"), W("e_w2v"), W("e_again"), W("e_s8"), W("e_plain")
assert np.array_equal(e, w2v), "word2vec header + CRLF gave another table"
assert np.array_equal(e, again), "the same seed gave another table"
found = h5py.File(d + "/e.h5", "r")["found_rows"][()].astype(bool)
assert np.array_equal(e[found], s8[found]), "--seed changed found rows"
other = ~found
other[0] = False
assert (e[other] != s8[other]).any(axis=1).all(), "--seed 8 left drawn rows unchanged"
assert not plain[0].any() and np.array_equal(plain[1:3], e[[98, 99]]) and np.array_equal(plain[4], e[100])
assert plain[3].any() and plain[5].any()
PYEOF
echo "prepare vectors: word2vec header + CRLF identical, --seed reproducible, plain vocabulary"

# ---- training: [init] from the file, frozen and trainable, -np 2 and 3 ----------------
job() { # job TRAINABLE RUN_DIR
cat <<EOF
[data]
train = "$T/w/train-*.h5"
test = "$T/w/test-*.h5"
normalize = false
[model]
[[model.layers]]
name = "emb"
type = "embedding"
num_embeddings = 257
embedding_dim = 8
padding_idx = 0
trainable = $1
[[model.layers]]
type = "gru"
hidden_size = 8
[[model.layers]]
type = "dense"
units = 2
[train]
epochs = 1
batch_size = 24
seed = 2
[optimizer]
type = "adam"
lr = 0.01
[init]
from = "$T/e.h5"
[run]
dir = "$2"
EOF
}
for tr in false true; do
  for np in 2 3; do
    job $tr "$T/run_${tr}_$np" >"$T/job.toml"
    $MPI -np $np "$NNTRAIN" "$T/job.toml" >"$T/out" 2>&1 ||
      fail "training (trainable = $tr) at -np $np: $(cat "$T/out")"
    grep -qF "[init] from $T/e.h5: 1 tensors of 1 layers copied (emb)" "$T/out" ||
      fail "no [init] line for emb (trainable = $tr, -np $np): $(cat "$T/out")"
  done
done
"$PY" - "$T" <<'PYEOF' || fail "training from the prepared vectors"
import glob, sys, h5py, numpy as np
d = sys.argv[1]
e = h5py.File(d + "/e.h5", "r")
w0, found = e["params/emb/weight"][()], e["found_rows"][()].astype(bool)
def final(run):
    ck = sorted(glob.glob("%s/%s/checkpoints/step-*.h5" % (d, run)))[-1]
    return h5py.File(ck, "r")["replicas/model/params/emb/weight"][()]
for np_ in (2, 3):
    assert np.array_equal(final("run_false_%d" % np_), w0), "frozen embedding changed at -np %d" % np_
seen = np.zeros(257, bool)
for p in glob.glob(d + "/w/train-*.h5"):
    with h5py.File(p, "r") as f:
        seen[np.unique(f["features"][()])] = True
seen[0] = False
assert seen[98:108].all() and seen[108:118].all() and not seen[118:].any()  # a..j, k..t only
for np_ in (2, 3):
    w = final("run_true_%d" % np_)
    moved = (w != w0).any(axis=1)
    assert moved[seen & found].all(), "found rows in the data did not move at -np %d" % np_
    assert not moved[~seen].any(), "rows never in the data moved at -np %d: %s" % (np_, np.flatnonzero(moved & ~seen))
    assert not w[0].any(), "the padding row moved"
    print("-np %d: %d found rows moved, max change %.4f" % (np_, moved.sum(), abs(w - w0).max()))
dd = abs(final("run_true_2") - final("run_true_3")).max()
print("trainable: max |np2 - np3| = %g" % dd)
assert dd < 1e-4, dd
PYEOF
echo "training: frozen = the file exactly, trainable: the data's rows moved (-np 2 and 3)"

# ---- errors -------------------------------------------------------------------------
V="--vocab $T/w/vocab.txt --layer emb --out $T/bad.h5"
printf 'a 1 2 3\nb 1 2\n' >"$T/ragged.txt"
expect_fail 4 "ragged.txt:2:6: 2 values after 'b', expected 3" "$NNTRAIN" prepare vectors "$T/ragged.txt" $V
printf 'a 1 2 3\nb 1 2 3 4\n' >"$T/ragged2.txt"
expect_fail 4 "ragged2.txt:2:9: 4 values after 'b', expected 3" "$NNTRAIN" prepare vectors "$T/ragged2.txt" $V
printf 'a 1 2 3\nb 1 2,5 3\n' >"$T/nonnum.txt"
expect_fail 4 "nonnum.txt:2:5: value 2 of 'b' is '2,5': expected a number" "$NNTRAIN" prepare vectors "$T/nonnum.txt" $V
printf 'a 1 2 3\nb 1 2 nan\n' >"$T/nan.txt"
expect_fail 4 "nan.txt:2:7: value 3 of 'b' is 'nan': expected a finite" "$NNTRAIN" prepare vectors "$T/nan.txt" $V
printf 'a 1 2 3\nb 1 1e40 3\n' >"$T/inf.txt"
expect_fail 4 "inf.txt:2:5: value 2 of 'b' is '1e40': expected a finite float32" "$NNTRAIN" prepare vectors "$T/inf.txt" $V
printf '2 4\na 1 2 3\n' >"$T/hdr.txt"
expect_fail 4 "hdr.txt:2: 3 values after 'a', expected 4 (the header on line 1)" "$NNTRAIN" prepare vectors "$T/hdr.txt" $V
printf 'the 1 2\nzz 3 4\n' >"$T/none.txt"
expect_fail 4 "none of the 257 tokens of $T/w/vocab.txt is among the 2 vectors" "$NNTRAIN" prepare vectors "$T/none.txt" $V
printf '0\t<pad>\n1\ta\n1\tb\n' >"$T/dupid.txt"
expect_fail 4 "dupid.txt:3:1: id 1 is given twice (first on line 2)" \
  "$NNTRAIN" prepare vectors "$T/glove.txt" --vocab "$T/dupid.txt" --layer emb --out "$T/bad.h5"
printf '# ids\n0\t<pad>\n1\ta\n3\tb\n' >"$T/range.txt"
expect_fail 4 "range.txt:4:1: id 3 is outside 0..2" \
  "$NNTRAIN" prepare vectors "$T/glove.txt" --vocab "$T/range.txt" --layer emb --out "$T/bad.h5"
expect_fail 4 "nope.txt: no such file" "$NNTRAIN" prepare vectors "$T/nope.txt" $V
[ -e "$T/bad.h5" ] && fail "a failed prepare left $T/bad.h5"
expect_fail 2 "e.h5 exists: give --force" "$NNTRAIN" prepare vectors "$T/glove.txt" \
  --vocab "$T/w/vocab.txt" --layer emb --out "$T/e.h5"
"$NNTRAIN" prepare vectors "$T/glove.txt" --vocab "$T/w/vocab.txt" --layer emb --out "$T/e.h5" \
  --seed 8 --force >/dev/null 2>&1 || fail "--force did not replace the file"
cmp -s "$T/e.h5" "$T/e_s8.h5" || "$PY" -c "
import sys, h5py, numpy as np
a, b = (h5py.File(p, 'r')['params/emb/weight'][()] for p in sys.argv[1:])
sys.exit(0 if np.array_equal(a, b) else 1)" "$T/e.h5" "$T/e_s8.h5" || fail "--force wrote another table"
expect_fail 2 "--padding-idx 6 is outside the ids 0..5" "$NNTRAIN" prepare vectors "$T/glove.txt" \
  --vocab "$T/plain.txt" --layer emb --out "$T/bad.h5" --padding-idx 6
expect_fail 2 "--layer 'a/b'" "$NNTRAIN" prepare vectors "$T/glove.txt" \
  --vocab "$T/plain.txt" --layer a/b --out "$T/bad.h5"
echo "errors: one line each, exit 4 (data) or 2 (command line)"

echo "e2e_vectors: all checks passed"
