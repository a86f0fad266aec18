# e2e_check.sh: `nntrain check` end to end: the summary of a valid job (with
# tiny shards made by `nntrain prepare idx`, and without data through
# model.input_shape), exit code 3 with one file:line:col line for bad jobs, 4
# for missing data, --set, and that docs/job-file.md is what
# `nntrain check --reference` generates (the docs cannot drift from the code).
set -u
: "${NNTRAIN:?}" "${NN_SOURCE_DIR:?}"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
fail=0
bad() { echo "FAIL: $*" >&2; fail=1; }

# run NAME WANT_EXIT ARGS...: runs nntrain, keeps stdout/stderr in NAME.out/.err
run() {
  local name=$1 want=$2
  shift 2
  "$NNTRAIN" "$@" >"$name.out" 2>"$name.err"
  local got=$?
  if [ "$got" != "$want" ]; then
    bad "$name: exit $got, want $want"
    sed 's/^/    /' "$name.out" "$name.err" >&2
  fi
}
# has NAME FILE TEXT: FILE contains TEXT (fixed string)
has() { grep -qF -- "$3" "$2" || { bad "$1: $2 lacks '$3'"; sed 's/^/    /' "$2" >&2; }; }
# one_line NAME: stderr is exactly one line
one_line() { [ "$(wc -l <"$1.err")" = 1 ] || { bad "$1: stderr is not one line"; cat "$1.err" >&2; }; }

# --- tiny data: 40 train + 20 test 28x28 images, 10 classes ---------------------
python3 - <<'EOF' || exit 1
import struct
def idx(path, magic, dims, data):
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic))
        for d in dims: f.write(struct.pack(">I", d))
        f.write(bytes(data))
for name, n in (("train", 40), ("test", 20)):
    idx(name + "-images.idx", 0x803, (n, 28, 28), [(i * 7 + j) % 256 for i in range(n) for j in range(784)])
    idx(name + "-labels.idx", 0x801, (n,), [i % 10 for i in range(n)])
EOF
run prep_train 0 prepare idx train-images.idx train-labels.idx --out data --split train --shards 2 --classes 10
run prep_test 0 prepare idx test-images.idx test-labels.idx --out data --split test --classes 10 \
  --stats data/train-000.h5

cat >mlp.toml <<'EOF'
name = "tiny_mlp"
[data]
train = "data/train-*.h5"
test = "data/test-*.h5"
[[model.layers]]
type = "flatten"
[[model.layers]]
type = "dense"
units = 256
activation = "relu"
[[model.layers]]
type = "dense"
units = 10
[train]
epochs = 2
batch_size = 8
EOF

# --- a valid job: summary with the right totals -----------------------------
run valid 0 check mlp.toml
has valid valid.out "train  data/train-*.h5: 40 samples in 2 files, sample [1, 28, 28], 10 classes"
has valid valid.out "test   data/test-*.h5: 20 samples in 1 file, sample [1, 28, 28], 10 classes"
has valid valid.out "input  [1, 28, 28]"
# 784*256+256 + 256*10+10
has valid valid.out "total params: $((784 * 256 + 256 + 256 * 10 + 10)) ($(((784 * 256 + 256 + 256 * 10 + 10) * 4)) bytes as float32)"
grep -Eq '^ +1 +dense1 +dense +\[256\] +200960( |$)' valid.out || bad "valid: no row for dense1"
grep -Eq '^ +3 +dense2 +dense +\[10\] +2570( |$)' valid.out || bad "valid: no row for dense2"

# --set changes the model
run set_units 0 check mlp.toml --set model.layers.1.units=32 --set train.epochs=1
has set_units set_units.out "total params: $((784 * 32 + 32 + 32 * 10 + 10))"

# no data needed with model.input_shape
sed -e 's|data/train-\*|nowhere/train-*|' -e 's|data/test-\*|nowhere/test-*|' mlp.toml >nodata.toml
run nodata_shape 0 check nodata.toml --set 'model.input_shape=[1, 28, 28]'
has nodata_shape nodata_shape.out "no files match (not checked)"
has nodata_shape nodata_shape.out "total params: 203530"

# --- data problems: exit 4 --------------------------------------------------
run nodata 4 check nodata.toml
one_line nodata
has nodata nodata.err "nowhere/train-*"
printf 'not hdf5\n' >data/train-999.h5
run baddata 4 check mlp.toml
one_line baddata
rm -f data/train-999.h5

# --- the model does not fit the data: exit 3 ---------------------------------
run classes 3 check mlp.toml --set model.layers.2.units=5
has classes classes.err "the model has 5 outputs but the data has 10 classes"
# the trainer's rule (run/replica.h): input_shape may reshape the samples, not resize them
run reshape 0 check mlp.toml --set 'model.input_shape=[784]'
run shape 3 check mlp.toml --set 'model.input_shape=[783]'
has shape shape.err "model.input_shape [783] does not match the data's sample shape [1, 28, 28]"

# the task kind comes from the task table
run task 3 check mlp.toml --set train.task=bogus
has task task.err 'train.task = "bogus": expected one of "supervised", "language_model", "autoencoder", "vae", "gan", "test_twin"'

# --- bad job files: exit 3, one line with file:line:col ------------------------
printf '[data]\ntrain = "data/train-*.h5"\n[[model.layers]]\ntype = "dense"\nunits = 10\n[train]\nbacth_size = 3\n' >typo.toml
run typo 3 check typo.toml
one_line typo
has typo typo.err "typo.toml:7:1: unknown key 'bacth_size' in [train]; did you mean 'batch_size'?"

printf '[data]\ntrain = "data/train-*.h5"\n[[model.layers]]\ntype = "dense"\nunits = 10\n[train]\nepochs = "ten"\n' >type.toml
run type 3 check type.toml
one_line type
has type type.err "type.toml:7:10: train.epochs: expected an integer, got string"

printf '[data]\ntrain = "data/train-*.h5"\n[[model.layers]]\ntype = "dense"\nunits = 10\n[optimizer]\nlr = -1\n' >range.toml
run range 3 check range.toml
one_line range
has range range.err "range.toml:7:6: optimizer.lr: -1 is out of range (0, inf)"

printf '[data]\ntrain = "data/train-*.h5"\n[[model.layers]]\ntype = "dense"\n' >required.toml
run required 3 check required.toml
one_line required
has required required.err "required.toml:3:1: model.layers[0] (dense): missing required key 'units'"

printf '[data]\ntrain = "data/train-*.h5"\n[[model.layers]]\ntype = "dense"\nunits = 10\n[trian]\n' >section.toml
run section 3 check section.toml
one_line section
has section section.err "section.toml:6:1: unknown section [trian]; did you mean [train]?"

printf '[data]\ntrain = "data/train-*.h5\n' >syntax.toml
run syntax 3 check syntax.toml
one_line syntax
has syntax syntax.err "syntax.toml:2:"

run badset 3 check mlp.toml --set train.epochs=x
one_line badset
has badset badset.err "--set train.epochs=x: train.epochs: expected an integer, got string"

run nofile 3 check missing.toml
one_line nofile
has nofile nofile.err "missing.toml"

# --- layer graphs: check prints each layer's inputs; graph errors name the line --
cat >graph.toml <<'EOF2'
name = "tiny_graph"
[data]
train = "data/train-*.h5"
test = "data/test-*.h5"
[[model.layers]]
name = "stem"
type = "conv2d"
filters = 4
kernel_size = [3, 3]
[[model.layers]]
name = "wide"
type = "conv2d"
filters = 6
kernel_size = [1, 1]
[[model.layers]]
name = "deep"
type = "conv2d"
inputs = ["stem"]
filters = 2
kernel_size = [3, 3]
padding = "same"
[[model.layers]]
name = "cat"
type = "concat"
inputs = ["wide", "deep"]
[[model.layers]]
type = "global_avgpool"
[[model.layers]]
type = "dense"
units = 10
EOF2
run graph 0 check graph.toml
grep -Eq '^ +2 +deep +conv2d +\[2, 26, 26\] +74 +stem$' graph.out || { bad "graph: no row for deep"; cat graph.out >&2; }
grep -Eq '^ +3 +cat +concat +\[8, 26, 26\] +0 +wide, deep$' graph.out || { bad "graph: no row for cat"; cat graph.out >&2; }
has graph graph.out "input  [1, 28, 28]"
# a spatial mismatch: deep without 'same' padding is 24x24
run graph_shape 3 check graph.toml --set 'model.layers.2.padding="valid"'
one_line graph_shape
has graph_shape graph_shape.err "graph.toml:22: layer 3 'cat' (concat): input 'deep' is [2, 24, 24], 'wide' is [6, 26, 26]: spatial sizes differ"
# an input that is not above the layer
run graph_order 3 check graph.toml --set 'model.layers.1.inputs=["cat"]'
one_line graph_order
has graph_order graph_order.err "graph.toml:10: layer 1 'wide' (conv2d): input 'cat' is not a layer above this one"
# the example Inception job: four branches concatenated, twice
run inception 0 check "$NN_SOURCE_DIR/jobs/fashion_mnist_inception.toml" \
  --set 'data.train="data/train-*.h5"' --set 'data.test="data/test-*.h5"'
grep -Eq '^ +[0-9]+ +a +concat +\[64, 14, 14\] +0 +a_b1, a_b2, a_b3, a_b4$' inception.out ||
  { bad "inception: no row for module a"; cat inception.out >&2; }

# --- usage ------------------------------------------------------------------
run help 0 check --help
has help help.out "usage: nntrain check JOB.toml"
run usage 2 check
run usage2 2 check mlp.toml --bogus

# --- the reference is generated: docs/job-file.md must equal it ---------------
run reference 0 check --reference
if ! diff -u "$NN_SOURCE_DIR/docs/job-file.md" reference.out >reference.diff; then
  bad "docs/job-file.md differs from 'nntrain check --reference' (regenerate it:" \
    "nntrain check --reference > docs/job-file.md)"
  head -40 reference.diff >&2
fi

[ $fail = 0 ] && echo "e2e_check: ok"
exit $fail
