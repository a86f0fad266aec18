#!/usr/bin/env bash
# Install the Debian packages nntrain builds and runs with (idempotent).
# Runs apt-get as root, or through sudo.
set -euo pipefail
pkgs=(build-essential cmake pkg-config git
      libopenmpi-dev openmpi-bin libopenblas-dev libhdf5-dev zlib1g-dev
      libprotobuf-c-dev protobuf-c-compiler libjansson-dev
      libpng-dev                     # PNG pictures: dream, saliency, sample grids
      libgraphviz-dev                # nntrain graph: cgraph + gvc render model graphs
      libjs-chart.js                 # the run report's plots (inlined into report.html)
      chromium                       # tests/e2e_report.sh: the report in a headless browser
      libdnnl-dev                    # oneDNN: the fast conv2d backend (NN_DNNL=AUTO finds it)
      dataset-fashion-mnist python3 python3-numpy python3-h5py
      clang-14 libclang-rt-14-dev    # the libFuzzer targets (tests/fuzz)
      iproute2 util-linux)           # scripts/cluster.sh: ip netns, tc tbf, unshare, flock
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "deps: installing ${missing[*]}"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
