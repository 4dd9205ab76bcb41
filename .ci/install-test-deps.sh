#!/usr/bin/env bash
# Installs what nnc's test suite reads from outside the repository:
#   - Fashion-MNIST (Debian's dataset-fashion-mnist) for the training tests;
#   - the ONNX project's backend node tests (PyPI onnx==1.22.0, the last release that
#     ships them) for the conformance harness, linked at ~/.cache/nnc/onnx-node-tests.
# Safe to run repeatedly; does nothing that is already done.
set -euo pipefail

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    sudo_cmd=""
    [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi

cache="${XDG_CACHE_HOME:-$HOME/.cache}/nnc"
link="$cache/onnx-node-tests"
if [ ! -d "$link" ]; then
    mkdir -p "$cache"
    python3 -m venv "$cache/onnx-venv"
    "$cache/onnx-venv/bin/pip" install -q --disable-pip-version-check onnx==1.22.0
    node_dir=$("$cache/onnx-venv/bin/python" -c 'import onnx, os; print(os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "node"))')
    ln -sfn "$node_dir" "$link"
fi
echo "test data ready: /usr/share/datasets/fashion-mnist, $link ($(ls "$link" | wc -l) node tests)"
