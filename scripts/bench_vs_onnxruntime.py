#!/usr/bin/env python3
"""Times tract (through `kneescreen bench`) and onnxruntime on the same model files in one run,
both on one thread, and prints the tract/onnxruntime ratio of one network pass per model (the
appliance makes two passes per image when the card says flip_average: the image and its mirror).

    cargo build --release
    .venv/bin/python scripts/bench_vs_onnxruntime.py [--bin target/release/kneescreen] [--runs 30]

Also prints everything around the network (decode, preprocess, CAM, overlay) against one pass,
the joint search on a 2500×2000 radiograph against one pass, both views of an image (the image
and its mirror) on every core against one pass alone, and the load + optimise time. Variants
that onnxruntime cannot run (fp16, made from the fp32 file at load, on CPUs with half-precision
arithmetic) show tract's figures only. Not run in CI (timings need a quiet machine).
"""
import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent


def ort_median_ms(path, runs):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 224, 224, 3), dtype=np.float32)
    session.run(None, {"image": x})  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        session.run(None, {"image": x})
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", default=str(ROOT / "target/release/kneescreen"))
    p.add_argument("--runs", type=int, default=30)
    args = p.parse_args()
    def bench(*extra):
        out = subprocess.run([args.bin, "bench", "--json", "--runs", str(args.runs), *extra], check=True,
                             capture_output=True, text=True)
        return {m["name"]: m for m in json.loads(out.stdout)["models"]}

    one = bench("--threads", "1")
    every = bench()
    print(f"{'model':<6} {'tract ms/pass':>14} {'ort ms':>8} {'tract/ort':>10} {'/ tract fp32':>12} "
          f"{'around/pass':>12} {'localize/pass':>14} {'threads':>8} {'views/pass':>11} {'load ms':>8}")
    fp32_pass = one["fp32"]["pass_ms"]
    for name, m in one.items():
        s = m["stages_ms"]
        ort_ms = ort_median_ms(Path(m["file"]), args.runs) if name != "fp16" else float("nan")
        around = s["decode"] + s["preprocess"] + s["cam"] + s["overlay"]
        per_pass = m["pass_ms"]
        e = every[name]
        print(f"{name:<6} {per_pass:>14.2f} {ort_ms:>8.2f} {per_pass / ort_ms:>10.2f} {per_pass / fp32_pass:>12.2f} "
              f"{around / per_pass:>12.3f} {s['localize'] / per_pass:>14.2f} {e['threads']:>8} "
              f"{e['stages_ms']['inference'] / e['pass_ms']:>11.2f} {m['load_ms']:>8.1f}")


if __name__ == "__main__":
    main()
