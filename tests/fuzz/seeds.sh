#!/usr/bin/env bash
# tests/fuzz/seeds.sh OUT: build the seed corpora of the fuzz targets into
# OUT/<target>/ from the project's own inputs (no binary seed is committed):
#   toml   tests/toml/{valid,invalid}/*.toml and jobs/*.toml
#   job    jobs/*.toml and a small job pointing at generated shards
#   proto  the jobs packed as JobSpecs, one EpochControl (fuzz_seedgen)
#   idx    4-image slices of Fashion-MNIST (/usr/share/datasets), plain and gzip
#   csv    small CSV files written here (byte 0: fuzz_csv's options)
#   shard  shards from `nntrain prepare` (fashion-mnist --limit, idx, csv)
#   ckpt   checkpoints of a tiny training run, and tests/fixtures/ckpt_v1
# Env: NN_FUZZ_BUILD (default build-fuzz: fuzz_seedgen), NNTRAIN (default
# $NN_FUZZ_BUILD/nntrain). Seeds that need Fashion-MNIST are left out
# without it (with a note).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:?usage: seeds.sh OUT}
B=${NN_FUZZ_BUILD:-$SRC/build-fuzz}
NNTRAIN=${NNTRAIN:-$B/nntrain}
FM=/usr/share/datasets/fashion-mnist
# nntrain may be the fuzz build's (ASan): leaks are not what seeding tests.
export ASAN_OPTIONS=detect_leaks=0 OPENBLAS_NUM_THREADS=1
rm -rf "$OUT"
mkdir -p "$OUT"/{toml,job,proto,idx,csv,shard,ckpt}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

# toml, job
for f in "$SRC"/tests/toml/valid/*.toml "$SRC"/tests/toml/invalid/*.toml; do
  cp "$f" "$OUT/toml/$(basename "$(dirname "$f")")-$(basename "$f")"
done
cp "$SRC"/jobs/*.toml "$OUT/toml/"
cp "$SRC"/jobs/*.toml "$OUT/job/"

# proto
for f in "$SRC"/jobs/*.toml; do
  (cd "$SRC" && "$B/fuzz_seedgen" jobspec "$f" "$OUT/proto/$(basename "$f" .toml).pb")
done
"$B/fuzz_seedgen" epoch "$OUT/proto/epoch.pb"

# csv: byte 0 = options (0: auto header, no label; 8: label "label"; 6: label "0", header yes)
csv() { printf "\\$(printf %03o "$1")" > "$OUT/csv/$2"; cat >> "$OUT/csv/$2"; }
printf 'a,b,c,label\n0.5,-1,2e3,1\n" 3.25 ",4,5,0\r\n\n-0.0,1e-3,7,2\n' | csv 8 labelled.csv
printf '1,2,3\n4,5,6\n' | csv 0 plain.csv
printf 'x,y\n1,2\n' | csv 6 header.csv
printf 'label,f\n1,0.25\n0,0.75\n1,1.5\n' > "$T/c.csv"

# idx: 4 images and labels with their own headers, plain and gzip
be32() { printf "\\$(printf %03o $(($1 >> 24 & 255)))\\$(printf %03o $(($1 >> 16 & 255)))\\$(printf %03o $(($1 >> 8 & 255)))\\$(printf %03o $(($1 & 255)))"; }
if [ -r "$FM/train-images-idx3-ubyte.gz" ]; then
  { printf '\0\0\10\3'; be32 4; be32 28; be32 28
    gzip -dc "$FM/train-images-idx3-ubyte.gz" | tail -c +17 | head -c $((4 * 784)) || true; } > "$OUT/idx/img.idx"
  { printf '\0\0\10\1'; be32 4
    gzip -dc "$FM/train-labels-idx1-ubyte.gz" | tail -c +9 | head -c 4 || true; } > "$OUT/idx/lab.idx"
  gzip -c "$OUT/idx/lab.idx" > "$OUT/idx/lab.idx.gz"
  { printf '\0\0\10\2'; be32 2; be32 3; printf 'abcdef'; } > "$OUT/idx/small2d.idx"
else
  echo "seeds.sh: no Fashion-MNIST in $FM: idx, shard and ckpt seeds left out" >&2
  exit 0
fi

# shard: prepare from the slices, from fashion-mnist --limit and from CSV
"$NNTRAIN" prepare idx "$OUT/idx/img.idx" "$OUT/idx/lab.idx" --out "$T/d" --split train \
  --shards 1 >/dev/null
"$NNTRAIN" prepare fashion-mnist --out "$T/fm" --limit 16 >/dev/null
"$NNTRAIN" prepare csv "$T/c.csv" --label label --out "$T/cs" --split c --shards 1 >/dev/null
"$NNTRAIN" prepare csv "$T/c.csv" --label f --regression --out "$T/cr" --split r --shards 1 >/dev/null
cp "$T/d/train-000.h5" "$OUT/shard/idx.h5"
for f in "$T"/fm/*.h5; do cp "$f" "$OUT/shard/fm-$(basename "$f")"; done
cp "$T"/cs/*.h5 "$OUT/shard/csv-class.h5"
cp "$T"/cr/*.h5 "$OUT/shard/csv-regression.h5"

# ckpt: a tiny run (1 rank, 2 epochs of 16 samples, a checkpoint each epoch)
cat > "$T/job.toml" <<EOT
name = "fuzz_seed"
[data]
train = "$T/fm/train-*.h5"
[model]
[[model.layers]]
type = "dense"
units = 4
activation = "relu"
[[model.layers]]
type = "dense"
units = 10
[train]
epochs = 2
batch_size = 8
[optimizer]
type = "adam"
[checkpoint]
every_epochs = 1
[run]
dir = "$T/run"
EOT
cp "$T/job.toml" "$OUT/job/tiny.toml"
"$NNTRAIN" "$T/job.toml" --quiet >/dev/null
for f in "$T"/run/checkpoints/*.h5; do cp "$f" "$OUT/ckpt/$(basename "$f")"; done
cp "$SRC"/tests/fixtures/ckpt_v1/*.h5 "$OUT/ckpt/v1.h5"
for d in "$OUT"/*/; do echo "seeds: $(basename "$d"): $(ls "$d" | wc -l) files"; done
