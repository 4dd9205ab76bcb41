#!/usr/bin/env python3
"""The seed training step (784-256-10 MLP, ReLU, softmax cross-entropy, SGD lr 0.01) in a
peer framework, timed: `seed_step.py FRAMEWORK --batch B --steps S` prints one JSON
object with the median and minimum step time in ms. FRAMEWORK is numpy, jax, torch or
ort (ONNX Runtime Training on `models/mlp.onnx`, nnc's seed model).

Not run by CI: the peers are installed in a scratch environment
(`pip install numpy jax torch onnxruntime-training onnx`), see benches/peers/README.md.
"""
import argparse
import json
import statistics
import time

import numpy as np


def data(batch, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((batch, 784), dtype=np.float32)
    y = rng.integers(0, 10, size=batch)
    w1 = (rng.standard_normal((784, 256)) * np.sqrt(2 / 784)).astype(np.float32)
    w2 = (rng.standard_normal((256, 10)) * np.sqrt(2 / 256)).astype(np.float32)
    return x, y, w1, np.zeros(256, np.float32), w2, np.zeros(10, np.float32)


def numpy_step(batch):
    x, y, w1, b1, w2, b2 = data(batch)
    onehot = np.eye(10, dtype=np.float32)[y]
    lr = np.float32(0.01)

    def step():
        h = np.maximum(x @ w1 + b1, 0)
        z = h @ w2 + b2
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        loss = -np.log(p[np.arange(batch), y]).mean()
        dz = (p - onehot) / batch
        dh = (dz @ w2.T) * (h > 0)
        np.subtract(w2, lr * (h.T @ dz), out=w2)
        np.subtract(b2, lr * dz.sum(axis=0), out=b2)
        np.subtract(w1, lr * (x.T @ dh), out=w1)
        np.subtract(b1, lr * dh.sum(axis=0), out=b1)
        return loss

    return step


def jax_step(batch):
    import jax
    import jax.numpy as jnp

    x, y, *params = data(batch)
    x, y = jnp.asarray(x), jnp.asarray(y)
    params = [jnp.asarray(p) for p in params]

    def loss_fn(params, x, y):
        w1, b1, w2, b2 = params
        h = jax.nn.relu(x @ w1 + b1)
        logits = h @ w2 + b2
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(batch), y])

    @jax.jit
    def update(params, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        return [p - 0.01 * g for p, g in zip(params, grads)], loss

    state = {"params": params}

    def step():
        state["params"], loss = update(state["params"], x, y)
        return loss.block_until_ready()

    return step


def torch_step(batch):
    import torch

    x, y, *params = data(batch)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    w1, b1, w2, b2 = [torch.from_numpy(p).requires_grad_() for p in params]
    opt = torch.optim.SGD([w1, b1, w2, b2], lr=0.01)

    def step():
        opt.zero_grad(set_to_none=True)
        logits = torch.relu(x @ w1 + b1) @ w2 + b2
        loss = torch.nn.functional.cross_entropy(logits, y)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def ort_step(batch):
    import os
    import tempfile

    import onnx
    import onnxruntime
    from onnxruntime.training import artifacts
    from onnxruntime.training.api import CheckpointState, Module, Optimizer

    onnxruntime.set_default_logger_severity(3)
    model = onnx.load(os.path.join(os.path.dirname(__file__), "..", "..", "models", "mlp.onnx"))
    params = [i.name for i in model.graph.initializer]
    d = tempfile.mkdtemp()
    artifacts.generate_artifacts(
        model,
        requires_grad=params,
        loss=artifacts.LossType.CrossEntropyLoss,
        optimizer=artifacts.OptimType.SGD,
        artifact_directory=d,
    )
    state = CheckpointState.load_checkpoint(os.path.join(d, "checkpoint"))
    module = Module(os.path.join(d, "training_model.onnx"), state, os.path.join(d, "eval_model.onnx"))
    opt = Optimizer(os.path.join(d, "optimizer_model.onnx"), module)
    opt.set_learning_rate(0.01)
    module.train()
    x, y, *_ = data(batch)
    y = y.astype(np.int64)

    def step():
        loss = module(x, y)
        opt.step()
        module.lazy_reset_grad()
        return loss

    return step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("framework", choices=["numpy", "jax", "torch", "ort"])
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--threads", type=int, default=0, help="torch: set_num_threads (0: its default)")
    a = ap.parse_args()
    if a.framework == "torch" and a.threads:
        import torch

        torch.set_num_threads(a.threads)
    step = {"numpy": numpy_step, "jax": jax_step, "torch": torch_step, "ort": ort_step}[a.framework](a.batch)
    for _ in range(20):
        step()
    times = []
    for _ in range(a.steps):
        t = time.perf_counter()
        step()
        times.append((time.perf_counter() - t) * 1e3)
    print(json.dumps({"framework": a.framework, "batch": a.batch, "median_ms": statistics.median(times), "min_ms": min(times)}))


if __name__ == "__main__":
    main()
