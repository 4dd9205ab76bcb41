#!/usr/bin/env bash
# Reruns the backend's and the trainer's tests with every other matrix-product kernel
# family this CPU runs (`NNC_KERNELS`), then the backend's in checked mode
# (`NNC_CHECKED`, which bounds-checks the Cranelift kernels). The main run used `auto`,
# the widest family the CPU has (`Kernels::Auto`), so that one is not run again.
#
# The suites are picked by test target within the workspace, not with `-p`: selecting
# packages unifies dependency features differently, which rebuilt cranelift-codegen
# and a dozen other crates (about 3 minutes) for each selection. Same-named targets of
# other crates (the interpreter's `matmul`, `ops`, ...) and every crate's unit tests
# run along; they take well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."

# `--test NAME` for every integration test of the given crates.
targets() {
    for crate in "$@"; do
        for t in "$crate"/tests/*.rs; do
            printf -- '--test %s ' "$(basename "$t" .rs)"
        done
    done
}
backend_and_trainer=$(targets crates/nnc-cranelift crates/nnc-train)
backend=$(targets crates/nnc-cranelift)

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
    # shellcheck disable=SC2086 # one word per argument
    NNC_KERNELS=$k cargo test -j2 --workspace --lib $backend_and_trainer
done
echo "== NNC_CHECKED=1"
# shellcheck disable=SC2086
NNC_CHECKED=1 cargo test -j2 --workspace --lib $backend
