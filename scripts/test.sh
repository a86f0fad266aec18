#!/usr/bin/env bash
# The README's second command (and CI's): install, build, run every test, then
# the unit, MPI and end-to-end tests again under AddressSanitizer + UBSan, with
# the allocation-failure walk (which runs only there).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh build -DNN_FAULT_INJECTION=ON
(cd build && ctest --output-on-failure -j2 -LE allocfail)
scripts/build.sh build-asan -DNN_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug -DNN_FAULT_INJECTION=ON
# Leak checking stays on. Open MPI's plugins keep process-lifetime allocations:
# keep them loaded and unwind fully so tests/lsan.supp can name them.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:fast_unwind_on_malloc=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:print_suppressions=0
export OMPI_MCA_mca_base_component_disable_dlclose=1
(cd build-asan && ctest --output-on-failure -j2 -L 'unit|mpi|e2e|allocfail')
