#!/usr/bin/env python3
"""Times tract (through `kneescreen bench`) and onnxruntime on the same model files in one run,
both on one thread, and prints the tract/onnxruntime ratio of one network pass per model (the
appliance makes two passes per image when the card says flip_average: the image and its mirror).

    cargo build --release
    .venv/bin/python scripts/bench_vs_onnxruntime.py [--bin target/release/kneescreen] [--runs 30] [--rounds 3]

Also prints everything around the network (decode, preprocess, CAM, overlay) against one pass,
the joint search on a 2500×2000 radiograph against one pass, both views of an image (the image
and its mirror) on every core against one pass alone, and the load + optimise time. Variants
that onnxruntime cannot run (fp16, made from the fp32 file at load, on CPUs with half-precision
arithmetic) show tract's figures only. tract and onnxruntime take turns, round after round, so a
busy machine slows both alike: each round's figures, then the median of the rounds'. Not run in CI
(timings need a quiet machine).
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
    p.add_argument("--rounds", type=int, default=3, help="tract and onnxruntime take turns this many times")
    args = p.parse_args()

    def bench(*extra):
        out = subprocess.run([args.bin, "bench", "--json", "--runs", str(args.runs), *extra], check=True,
                             capture_output=True, text=True)
        return {m["name"]: m for m in json.loads(out.stdout)["models"]}

    columns = ["tract ms/pass", "ort ms", "tract/ort", "/ tract fp32", "around/pass", "localize/pass",
               "views/pass", "load ms"]
    rows = {}  # model -> column -> one value per round
    for r in range(args.rounds):
        one = bench("--threads", "1")
        every = bench()
        print(f"round {r + 1}")
        print(f"  {'model':<6}" + "".join(f"{c:>15}" for c in columns) + f"{'threads':>9}")
        for name, m in one.items():
            s = m["stages_ms"]
            ort_ms = ort_median_ms(Path(m["file"]), args.runs) if name != "fp16" else float("nan")
            per_pass = m["pass_ms"]
            e = every[name]
            values = [per_pass, ort_ms, per_pass / ort_ms, per_pass / one["fp32"]["pass_ms"],
                      (s["decode"] + s["preprocess"] + s["cam"] + s["overlay"]) / per_pass,
                      s["localize"] / per_pass, e["stages_ms"]["inference"] / e["pass_ms"], m["load_ms"]]
            for c, v in zip(columns, values):
                rows.setdefault(name, {}).setdefault(c, []).append(v)
            print(f"  {name:<6}" + "".join(f"{v:>15.3f}" for v in values) + f"{e['threads']:>9}")
    print(f"median of {args.rounds} rounds")
    print(f"  {'model':<6}" + "".join(f"{c:>15}" for c in columns))
    for name, by_column in rows.items():
        print(f"  {name:<6}" + "".join(f"{float(np.median(by_column[c])):>15.3f}" for c in columns))


if __name__ == "__main__":
    main()
