# Shared helpers of the end-to-end tests (tests/e2e_*.sh source this file).
#
#   PY                  Debian's python3 (a python3 earlier on PATH may lack numpy/h5py)
#   fail MSG            print "FAIL: MSG" and exit 1
#   skip MSG            print "SKIPPED: MSG" and exit 77: a tool or data set the test
#                       needs is missing (CTest SKIP_RETURN_CODE 77 shows it as
#                       skipped; a missing tool must never count as a pass)
#   need_py MOD...      skip unless $PY imports every module (e.g. need_py h5py numpy)
#   need_fashion_mnist  skip unless Debian's dataset-fashion-mnist is installed
#   expect_fail CODE WORD CMD...
#                       CMD exits CODE and prints exactly one stderr line containing WORD
#                       (the project's rule for bad input); needs $T
#   fm_idx KIND FIRST COUNT OUT
#                       Fashion-MNIST (Debian's dataset-fashion-mnist) KIND = train|t10k,
#                       images FIRST .. FIRST+COUNT-1 and their labels, as the IDX pair
#                       OUT-img, OUT-lab: real data, small enough for a test
#   tiny_csv OUT N      a small two-class CSV: header "a,b,c,label", N rows of three
#                       uniform features in [-1, 1] (seed 3), label = (a + b > 0)
#   mlp_model           the [model] section of the small MLP the e2e jobs train
#                       (784 -> dense 64 relu -> dense 10), for a job's heredoc
PY=/usr/bin/python3

fail() { echo "FAIL: $*" >&2; exit 1; }

skip() { echo "SKIPPED: $*"; exit 77; }

need_py() {
  local mods
  mods=$(IFS=,; echo "$*")
  "$PY" -c "import $mods" 2>/dev/null ||
    skip "$PY cannot import $mods (Debian: apt-get install ${*/#/python3-})"
}

FASHION_MNIST_DIR=/usr/share/datasets/fashion-mnist
need_fashion_mnist() {
  [ -r "$FASHION_MNIST_DIR/train-images-idx3-ubyte.gz" ] ||
    skip "Fashion-MNIST is not installed in $FASHION_MNIST_DIR (apt-get install dataset-fashion-mnist)"
}

expect_fail() {
  local code=$1 word=$2; shift 2
  "$@" >"$T/so" 2>"$T/se"
  local rc=$?
  [ "$rc" = "$code" ] || fail "'$*' exited $rc, expected $code; stderr: $(cat "$T/se")"
  [ "$(wc -l <"$T/se")" = 1 ] || fail "'$*' printed $(wc -l <"$T/se") lines on stderr, expected 1: $(cat "$T/se")"
  grep -qF -- "$word" "$T/se" || fail "'$*' stderr lacks '$word': $(cat "$T/se")"
}

fm_idx() {
  need_fashion_mnist
  "$PY" - "$@" <<'PYEOF'
import gzip, struct, sys
kind, first, n, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
src = "/usr/share/datasets/fashion-mnist/"
img = gzip.open(src + kind + "-images-idx3-ubyte.gz").read()
lab = gzip.open(src + kind + "-labels-idx1-ubyte.gz").read()
assert 16 + (first + n) * 784 <= len(img), "fm_idx: past the end of " + kind
open(out + "-img", "wb").write(struct.pack(">IIII", 0x803, n, 28, 28)
                               + img[16 + first * 784:16 + (first + n) * 784])
open(out + "-lab", "wb").write(struct.pack(">II", 0x801, n) + lab[8 + first:8 + first + n])
PYEOF
}

tiny_csv() {
  "$PY" - "$@" <<'PYEOF'
import random, sys
random.seed(3)
with open(sys.argv[1], "w") as f:
    f.write("a,b,c,label\n")
    for i in range(int(sys.argv[2])):
        x = [random.uniform(-1, 1) for _ in range(3)]
        f.write("%f,%f,%f,%d\n" % (*x, int(x[0] + x[1] > 0)))
PYEOF
}

mlp_model() {
  cat <<'EOF'
[model]
[[model.layers]]
type = "dense"
units = 64
activation = "relu"
[[model.layers]]
type = "dense"
units = 10
EOF
}

# The run report's browser tests: Debian's chromium and Chart.js (libjs-chart.js), else skip.
need_report_browser() {
  command -v chromium >/dev/null || skip "chromium is not installed (apt-get install chromium)"
  [ -r /usr/share/javascript/chart.js/chart.min.js ] || [ -n "${NNTRAIN_CHARTJS:-}" ] ||
    skip "Chart.js is not installed (apt-get install libjs-chart.js)"
}
