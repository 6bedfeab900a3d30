"""Golden fixtures for the site head's fit (tests/calibration.rs): scikit-learn's multinomial
LogisticRegression with an L2 penalty (C = 1/(n λ)) on seeded data, fitted to a tight tolerance.

    python scripts/make_fit_fixtures.py   # writes tests/fixtures/calibration/fit.json
"""
import json
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

rng = np.random.default_rng(11)
cases = []


def add(name, x, y, lam):
    n = len(y)
    m = LogisticRegression(C=1.0 / (n * lam), tol=1e-12, max_iter=100000).fit(x, y)
    cases.append(dict(name=name, x=x.ravel().tolist(), y=[int(v) for v in y], dims=x.shape[1],
                      classes=int(y.max()) + 1, lam=lam,
                      w=m.coef_.T.ravel().tolist(), b=m.intercept_.tolist(),
                      probabilities=m.predict_proba(x).ravel().tolist()))


# Three overlapping classes in four dimensions.
y = np.repeat([0, 1, 2], 20)
x = rng.normal(size=(60, 4)) + np.eye(3, 4)[y] * 1.5
add("overlapping", x, y, 0.01)
# More dimensions than rows, five classes: only the penalty makes the optimum unique.
y = np.arange(30) % 5
x = rng.normal(size=(30, 50)) + 0.5 * np.eye(5, 50)[y]
add("wide", x, y, 0.1)

out = Path(__file__).resolve().parent.parent / "tests/fixtures/calibration/fit.json"
out.write_text(json.dumps(cases) + "\n")
print(f"wrote {out} ({len(cases)} cases)")
