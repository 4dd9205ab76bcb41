#!/usr/bin/env python3
"""nnc's seed training step beside the peers', taking turns on this machine.

    python3 benches/peers/compare.py --python VENV/bin/python --nnc target/release/nnc

runs, round after round, `nnc bench` and `seed_step.py` for each peer at the batch,
on one core (`taskset -c 0`, and one BLAS/XLA/torch thread) and on two, and prints
the fastest step and the median of the rounds' medians (ms), with each one's ratio
to nnc's. Peers a Python environment lacks are left out.
"""
import argparse
import json
import os
import statistics
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))


def run(cmd, one_core):
    env = dict(os.environ)
    if one_core:
        cmd = ["taskset", "-c", "0"] + cmd
        env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                   XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        return None
    v = json.loads(out.stdout.strip().splitlines()[-1])
    return (v.get("median_ms", v.get("step_ms_median")), v.get("min_ms", v.get("step_ms_min")))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", required=True)
    ap.add_argument("--nnc", required=True)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=300)
    a = ap.parse_args()
    subjects = [("nnc", None), ("numpy", "numpy"), ("jax", "jax"), ("torch", "torch"), ("ort", "ort")]
    results = {}
    for r in range(a.rounds):
        for threads in (1, 2):
            for name, fw in subjects:
                if fw is None:
                    cmd = [a.nnc, "bench", "--batch", str(a.batch), "--steps", str(a.steps), "--threads", str(threads), "--json"]
                else:
                    cmd = [a.python, os.path.join(HERE, "seed_step.py"), fw, "--batch", str(a.batch), "--steps", str(a.steps), "--threads", str(threads)]
                got = run(cmd, threads == 1)
                if got:
                    results.setdefault((name, threads), []).append(got)
    print(f"seed training step, batch {a.batch}, ms (fastest step; median of {a.rounds} rounds' medians), × nnc's median")
    for threads in (1, 2):
        base = statistics.median(m for m, _ in results[("nnc", threads)])
        for name, _ in subjects:
            runs = results.get((name, threads))
            if not runs:
                continue
            med = statistics.median(m for m, _ in runs)
            print(f"  {threads} thread{'s' if threads > 1 else ' '} {name:6} {min(x for _, x in runs):7.3f} {med:7.3f}  {med / base:5.2f}×")


if __name__ == "__main__":
    main()
