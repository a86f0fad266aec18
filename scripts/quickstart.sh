#!/usr/bin/env bash
# The README's first command: install, build, prepare Fashion-MNIST, train the
# MLP example on 2 MPI ranks. Safe to run again (prepare skips up-to-date shards).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh build
build/nntrain prepare fashion-mnist --out data/fashion-mnist
if [ "$(id -u)" -eq 0 ]; then  # Open MPI refuses root unless told
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
exec mpirun -np 2 --oversubscribe build/nntrain jobs/fashion_mnist_mlp.toml "$@"
