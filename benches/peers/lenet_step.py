#!/usr/bin/env python3
"""LeNet-5's training step (the model of tests/fixtures/cnn/make_fixtures.py, imported from it: two 5×5
convolutions with ReLU and 2×2 max pooling, three dense layers, softmax cross-entropy,
SGD lr 0.01, random data) in PyTorch, timed: `lenet_step.py torch|torch-compile --batch B
--steps S` prints one JSON object with the median and minimum step time in ms. Pin it
to a core with `taskset -c 0` for one thread.

Not run by CI: PyTorch is installed in a scratch environment, see benches/peers/README.md.
"""
import argparse
import json
import statistics
import time

import os
import sys

import torch
import torch.nn.functional as F

# The model the fixtures were exported from (importing the script needs its tools:
# onnx, onnxruntime, onnxscript, torchvision).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../tests/fixtures/cnn"))
from make_fixtures import LeNet5  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("framework", choices=["torch", "torch-compile"])
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = LeNet5()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.rand(a.batch, 1, 28, 28)
    y = torch.randint(0, 10, (a.batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    if a.framework == "torch-compile":
        step = torch.compile(step)
    for _ in range(20):
        step()
    times = []
    for _ in range(a.steps):
        t = time.perf_counter()
        step()
        times.append((time.perf_counter() - t) * 1e3)
    print(json.dumps({"framework": a.framework, "batch": a.batch, "threads": a.threads,
                      "median_ms": statistics.median(times), "min_ms": min(times)}))


if __name__ == "__main__":
    main()
