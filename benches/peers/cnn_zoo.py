#!/usr/bin/env python3
"""torchvision's ResNet-18, MobileNetV2 and SqueezeNet 1.1 (random weights, 224x224)
exported to ONNX and timed in ONNX Runtime, for `nnc bench MODEL.onnx --infer` to be
compared against on the same machine:

    python3 benches/peers/cnn_zoo.py export --dir /tmp/zoo        # writes NAME.onnx
    taskset -c 0 python3 benches/peers/cnn_zoo.py ort --dir /tmp/zoo --batch 1 --threads 1
    nnc bench /tmp/zoo/resnet18.onnx --infer --batch 1 --threads 1

`export --dynamo` uses the dynamo exporter instead. Not run by CI (torch, torchvision
and onnxruntime live in a scratch environment, see benches/peers/README.md).
"""
import argparse
import json
import statistics
import time

MODELS = ["resnet18", "mobilenet_v2", "squeezenet1_1"]


def export(directory, dynamo):
    import torch
    import torchvision

    for name in MODELS:
        model = getattr(torchvision.models, name)(weights=None).eval()
        x = torch.rand(2, 3, 224, 224)
        path = f"{directory}/{name}.onnx"
        if dynamo:
            batch = {0: torch.export.Dim("N")}
            torch.onnx.export(model, (x,), dynamo=True, input_names=["input"], output_names=["logits"],
                              dynamic_shapes=(batch,)).save(path)
        else:
            torch.onnx.export(model, (x,), path, dynamo=False, opset_version=17, input_names=["input"],
                              output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
        print(path)


def ort(directory, batch, threads, runs):
    import numpy as np
    import onnxruntime

    for name in MODELS:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(f"{directory}/{name}.onnx", options,
                                               providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).random((batch, 3, 224, 224), dtype=np.float32)
        for _ in range(5):
            session.run(None, {"input": x})
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            session.run(None, {"input": x})
            times.append((time.perf_counter() - start) * 1e3)
        print(json.dumps({"model": name, "batch": batch, "threads": threads,
                          "median_ms": statistics.median(times), "min_ms": min(times)}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["export", "ort"])
    ap.add_argument("--dir", default="/tmp/zoo")
    ap.add_argument("--dynamo", action="store_true")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=30)
    a = ap.parse_args()
    if a.what == "export":
        export(a.dir, a.dynamo)
    else:
        ort(a.dir, a.batch, a.threads, a.runs)


if __name__ == "__main__":
    main()
