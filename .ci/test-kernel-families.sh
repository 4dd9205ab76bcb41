#!/usr/bin/env bash
# Reruns the backend's and the trainer's tests with every other matrix-product kernel
# family this CPU runs (`NNC_KERNELS`), then the backend's in checked mode
# (`NNC_CHECKED`, which bounds-checks the Cranelift kernels). The main run used `auto`,
# the widest family the CPU has (`Kernels::Auto`), so that one is not run again.
set -euo pipefail
cd "$(dirname "$0")/.."
families="cranelift"
if grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo; then
    families="$families avx2"
    if grep -qw avx512f /proc/cpuinfo; then
        families="$families avx512"
    fi
fi
auto="${families##* }"
for k in $families; do
    if [ "$k" = "$auto" ]; then
        echo "== NNC_KERNELS=$k: the main run's (auto)"
        continue
    fi
    echo "== NNC_KERNELS=$k"
    NNC_KERNELS=$k cargo test -j2 -p nnc-cranelift -p nnc-train
done
echo "== NNC_CHECKED=1"
NNC_CHECKED=1 cargo test -j2 -p nnc-cranelift
