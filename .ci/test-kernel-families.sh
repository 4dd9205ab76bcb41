#!/usr/bin/env bash
# Reruns the backend's and the trainer's tests with every matrix-product kernel family
# this CPU runs (`NNC_KERNELS`; the main run used `auto`), then the backend's in
# checked mode (`NNC_CHECKED`, which bounds-checks the Cranelift kernels).
set -euo pipefail
cd "$(dirname "$0")/.."
families="cranelift"
if grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo; then
    families="$families avx2"
    if grep -qw avx512f /proc/cpuinfo; then
        families="$families avx512"
    fi
fi
for k in $families; do
    echo "== NNC_KERNELS=$k"
    NNC_KERNELS=$k cargo test -j2 -p nnc-cranelift -p nnc-train
done
echo "== NNC_CHECKED=1"
NNC_CHECKED=1 cargo test -j2 -p nnc-cranelift
