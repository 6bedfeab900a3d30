"""Golden ROC fixtures for tests/screening.rs: scikit-learn's roc_curve (drop_intermediate=False)
and roc_auc_score on seeded cases, ties included.

    python scripts/make_roc_fixtures.py   # writes tests/fixtures/screening/roc.json
"""
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

rng = np.random.default_rng(7)
cases = []


def add(name, scores, labels):
    scores = np.asarray(scores, np.float32)
    labels = np.asarray(labels, bool)
    fpr, tpr, thr = roc_curve(labels, scores, drop_intermediate=False)
    # scikit-learn starts with (inf, 0, 0); the Rust curve starts at the highest score.
    cases.append(dict(
        name=name,
        scores=[float(s) for s in scores],
        labels=[bool(b) for b in labels],
        thresholds=[float(t) for t in thr[1:]],
        sensitivity=[float(t) for t in tpr[1:]],
        specificity=[float(1 - f) for f in fpr[1:]],
        auc=float(roc_auc_score(labels, scores)),
    ))


n = 300
labels = rng.random(n) < 0.4
add("overlapping", np.clip(rng.normal(0.35 + 0.3 * labels, 0.18), 0, 1), labels)
labels = rng.random(60) < 0.5
add("ties", np.round(rng.random(60) * 0.5 + 0.4 * labels, 1), labels)
add("separable", [0.1, 0.2, 0.3, 0.7, 0.8, 0.9], [0, 0, 0, 1, 1, 1])
add("inverted", [0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1])
add("all_tied", [0.5] * 5, [0, 1, 0, 1, 1])

out = Path(__file__).resolve().parent.parent / "tests/fixtures/screening/roc.json"
out.write_text(json.dumps(cases, indent=1) + "\n")
print(f"wrote {out} ({len(cases)} cases)")
