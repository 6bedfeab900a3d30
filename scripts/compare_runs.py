"""Selection-slice and val figures of trained runs, one pass and with the mirror averaged in, as the
appliance grades (temperature refitted on the selection slice each way), plus two decision rules
that were tried and not shipped: per-grade logit offsets tuned on the selection slice, and the
rounded expected grade. With --ensemble, also the mean of the runs' calibrated probabilities (an
upper bound for what distilling them into one network could give).

    .venv/bin/python scripts/compare_runs.py runs/improved runs/ordinal ... [--ensemble]

Decisions use the selection slice only; val is printed to be reported.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import cohen_kappa_score

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from train import fit_temperature, load_split, predict_logits, selection_split, summarize  # noqa: E402

KEYS = ("accuracy", "qwk", "mae", "binary_accuracy", "nll")


def tuned_offsets(logits, y):
    """Per-grade logit offsets maximising accuracy (coordinate ascent on a grid)."""
    b = np.zeros(logits.shape[1])
    for _ in range(3):
        for k in range(len(b)):
            scores = []
            for v in np.linspace(-1.5, 1.5, 61):
                trial = b.copy()
                trial[k] = v
                scores.append(((logits + trial).argmax(1) == y).mean())
            b[k] = np.linspace(-1.5, 1.5, 61)[int(np.argmax(scores))]
    return b - b.mean()


def line(name, m):
    return f"  {name:<24}" + " ".join(f"{k} {m[k]:.4f}" for k in KEYS)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+")
    p.add_argument("--data", default=str(HERE / "../../shared/data/kneeKL224"))
    p.add_argument("--cache", default=str(HERE / "../runs/cache"), help="preprocessed-image cache (train.py's)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--ensemble", action="store_true", help="also grade from the runs' mean probabilities")
    args = p.parse_args()
    import keras

    x, y, patients, _ = load_split(Path(args.data), "train", Path(args.cache))
    xv, yv, _, _ = load_split(Path(args.data), "val", Path(args.cache))
    _, sel = selection_split(y, patients, 0.15, args.seed)
    parts = {"selection": (x[sel], y[sel]), "val": (xv, yv)}
    ensemble = {part: [] for part in parts}
    for run in args.runs:
        model = keras.models.load_model(Path(run) / "model.keras", compile=False, safe_mode=False)
        logits = {}
        for part, (xs, _) in parts.items():
            one = predict_logits(model, xs)
            logits[part] = {"one pass": one, "with mirror": (one + predict_logits(model, xs[:, :, ::-1])) / 2}
        print(run)
        for view in ("one pass", "with mirror"):
            t = fit_temperature(logits["selection"][view], parts["selection"][1])
            for part, (_, ys) in parts.items():
                print(line(f"{part}, {view}", summarize(logits[part][view], ys, t)) + f" (T {t:.3f})")
        mirror_sel, mirror_val = logits["selection"]["with mirror"], logits["val"]["with mirror"]
        t = fit_temperature(mirror_sel, parts["selection"][1])
        for part in parts:
            ensemble[part].append(softmax(logits[part]["with mirror"] / t))
        b = tuned_offsets(mirror_sel, parts["selection"][1])
        for part, z, ys in (("selection", mirror_sel, parts["selection"][1]), ("val", mirror_val, yv)):
            acc = ((z + b).argmax(1) == ys).mean()
            prob = softmax(z / t)
            expected = np.clip(np.rint(prob @ np.arange(prob.shape[1])), 0, prob.shape[1] - 1)
            qwk = cohen_kappa_score(ys, expected.astype(int), weights="quadratic")
            print(f"  {part}: offsets tuned on selection -> accuracy {acc:.4f}; "
                  f"rounded expected grade -> accuracy {(expected == ys).mean():.4f} qwk {qwk:.4f}")
    if args.ensemble:
        print(f"ensemble of {len(args.runs)} runs (mean calibrated probabilities, with mirror)")
        for part, (_, ys) in parts.items():
            # summarize() takes logits: log-probabilities with temperature 1 give back the same.
            print(line(part, summarize(np.log(np.mean(ensemble[part], axis=0)), ys, 1.0)))


def softmax(z):
    p = np.exp(z - z.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


if __name__ == "__main__":
    main()
