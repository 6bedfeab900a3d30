"""A simulated other site: fixed, unseen transforms of the 224x224 source crops, and the figures of a
model on them.

Defined once, on 2026-12-01 before the `robust` recipe was trained, and not to be tuned afterwards:
the transforms differ in kind or in range from train.py's `robust` augmentations, so that they stand
in for a hospital whose digitiser, export pipeline and joint localiser the network has not seen.
Every image gets exactly one of the seven "sites" below (a seeded, balanced assignment, seed 20261201),
applied to the 8-bit 224x224 source image, i.e. before the preprocessing contract (crop60-eqhist-v1):

  tone        strong S-curve (logistic, gain 12, 8-bit output) then gamma 0.6
              (training: gamma 0.7-1.4 and a mild S-curve of at most half that strength)
  clahe       CLAHE-like local contrast: cv2.createCLAHE(clipLimit 3.0, tiles 8x8)
              (training: no local contrast operator at all)
  jpeg30      down to 160x160 (INTER_AREA), back up to 224x224 (INTER_CUBIC), JPEG quality 30
              (training: JPEG quality 50-95, no resolution loss)
  blur-shot   Gaussian blur sigma 1.6, then signal-dependent (Poisson) noise, 300 "photons" at full
              white (std ~9 grey levels at mid-grey) (training: blur sigma <= 1.2, Gaussian noise)
  offcentre   the joint 10 % of the side off centre, in a seeded direction per image: a 0.85-side
              window (190 px) around a point 22 px from the centre, reflected at the border,
              rescaled to 224x224 (INTER_CUBIC) (joint 1.18x; training shifts at most 8 %)
  mono12      the grey levels through a 12-bit inverted (MONOCHROME1-like) detector value with a
              power-1.8 transfer, v = round(4095 (1 - (x/255)^1.8)), re-inverted and windowed for
              display to [5 %, 85 %] of the 12-bit range, back to 8 bits (clips both ends)
  edge        CR-style large-kernel edge enhancement: unsharp mask sigma 4, amount 2.0, then +20
              grey levels of brightness (training: unsharp sigma <= 2.5, amount <= 1.5)

    .venv/bin/python scripts/simulated_site.py write --out /work/simsite
        writes /work/simsite/{val,selection}/<grade>/<name>.png and /work/simsite/MANIFEST.csv
        (split, grade, name, site); selection = train.py's patient-disjoint selection slice (seed 42).
        Keep --out outside the repository: these are images made from the data.
    .venv/bin/python scripts/simulated_site.py eval MODEL [MODEL ...] --sim /work/simsite
        MODEL: an fp32 ONNX file (onnxruntime) or a train.py run folder (its model.keras). Figures on
        plain selection, simulated selection, plain val and simulated val, graded as the appliance
        does (mean logits of the image and its mirror; temperature fitted on the plain selection
        slice), and accuracy per simulated site. The same preprocessing as export.py's figures.

    .venv/bin/python scripts/simulated_site.py decide SHIPPED.json NEW.json [--rule operating-point]
        the ship rule on two `eval --json` files (one model each; val is reported, never decides).
        --rule grade-oa (fixed 2026-12-01, before the robust runs): ship NEW only if on the plain
        selection slice its accuracy, QWK and OA accuracy (OA = arg-max grade >= 2) are each at most
        0.010 below SHIPPED's (noise), and on the simulated selection slice each is higher.
        --rule operating-point (the default; fixed 2026-12-03, before the second robust_continued
        run trained): the same, but the OA accuracy is the appliance's own OA call -- P(KL >= 2) at
        or above the model's own threshold, the highest one reaching sensitivity 0.90 on the plain
        selection slice (as scripts/operating_point.py and the appliance set it) -- because the
        appliance calls OA that way, not from the grade's arg-max.

    kneescreen eval --model int8 /work/simsite/val 2> refused.txt
    .venv/bin/python scripts/simulated_site.py refusals refused.txt --sim /work/simsite
        the images the appliance refused ("PATH: rejected: ..." lines of eval's stderr), counted per
        simulated site.

The simulated folders are ordinary <grade>/*.png trees, so `kneescreen eval /work/simsite/val` grades
them through the Rust pipeline too.
"""
import argparse
import csv
from collections import Counter
import json
import sys
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SEED = 20261201
SIZE = 224


def u8(x):
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def tone(img, rng):
    x = img / 255.0
    lo, hi = 1 / (1 + np.exp(6)), 1 / (1 + np.exp(-6))  # the curve's ends, so 0 -> 0 and 255 -> 255
    s = (1 / (1 + np.exp(-12 * (x - 0.5))) - lo) / (hi - lo)
    return u8(255 * np.clip(s, 0, 1) ** 0.6)


def clahe(img, rng):
    return cv2.createCLAHE(clipLimit=3.0, tileGridSize=(8, 8)).apply(img)


def jpeg30(img, rng):
    small = cv2.resize(img, (160, 160), interpolation=cv2.INTER_AREA)
    big = cv2.resize(small, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
    ok, buf = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 30])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)


def blur_shot(img, rng):
    x = cv2.GaussianBlur(img.astype(np.float32), (0, 0), 1.6)
    photons = 300.0
    return u8(rng.poisson(np.clip(x, 0, 255) / 255 * photons) / photons * 255)


def offcentre(img, rng):
    angle = rng.uniform(0, 2 * np.pi)
    side = 0.85 * SIZE
    cx, cy = SIZE / 2 + 0.10 * SIZE * np.cos(angle), SIZE / 2 + 0.10 * SIZE * np.sin(angle)
    scale = SIZE / side
    # Output pixel (u, v) samples input (cx + (u - 112) / scale, cy + (v - 112) / scale).
    m = np.array([[scale, 0, SIZE / 2 - scale * cx], [0, scale, SIZE / 2 - scale * cy]])
    return cv2.warpAffine(img, m, (SIZE, SIZE), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)


def mono12(img, rng):
    v = np.rint(4095 * (1 - (img / 255.0) ** 1.8))  # inverted 12-bit detector value
    u = (4095 - v) / 4095  # re-inverted for display
    return u8(255 * np.clip((u - 0.05) / (0.85 - 0.05), 0, 1))


def edge(img, rng):
    x = img.astype(np.float32)
    blurred = cv2.GaussianBlur(x, (0, 0), 4.0)
    return u8(x + 2.0 * (x - blurred) + 20)


SITES = {"tone": tone, "clahe": clahe, "jpeg30": jpeg30, "blur-shot": blur_shot, "offcentre": offcentre,
         "mono12": mono12, "edge": edge}


def scanner(img, rng):
    """One other scanner, every image alike (`write --one-site scanner`; defined on 2026-12-02
    before any figure on it was seen): a coarser digitiser (down to 180 px, INTER_AREA, and back,
    INTER_LINEAR), its display LUT (logistic S-curve, gain 8, then gamma 0.7), CR edge enhancement
    (unsharp mask sigma 3, amount 1.2), quantum noise (Poisson, 600 photons at white) and a tighter
    collimation (the joint 1.1x, centred)."""
    x = cv2.resize(img, (180, 180), interpolation=cv2.INTER_AREA)
    x = cv2.resize(x, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR) / 255.0
    lo, hi = 1 / (1 + np.exp(4)), 1 / (1 + np.exp(-4))
    x = 255 * np.clip((1 / (1 + np.exp(-8 * (x - 0.5))) - lo) / (hi - lo), 0, 1) ** 0.7
    x = x + 1.2 * (x - cv2.GaussianBlur(x, (0, 0), 3.0))
    photons = 600.0
    x = rng.poisson(np.clip(x, 0, 255) / 255 * photons) / photons * 255
    scale = 1.1
    m = np.array([[scale, 0, SIZE / 2 * (1 - scale)], [0, scale, SIZE / 2 * (1 - scale)]])
    return u8(cv2.warpAffine(x.astype(np.float32), m, (SIZE, SIZE), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT_101))


ONE_SITE = dict(SITES, scanner=scanner)


def source_images(data: Path, split: str):
    """(names "<grade>/<file>", source images uint8) in load_split's order."""
    names, imgs = [], []
    for grade in range(5):
        for f in sorted((data / split / str(grade)).glob("*.png")):
            img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
            assert img is not None and img.shape == (SIZE, SIZE), f
            names.append(f"{grade}/{f.name}")
            imgs.append(img)
    return names, imgs


def write(args):
    from train import selection_split

    data, out = Path(args.data), Path(args.out)
    assert not out.resolve().is_relative_to(HERE.parent.resolve()), "keep data-derived images outside the repo"
    rows = []
    parts = {}
    names, imgs = source_images(data, "train")
    y = np.array([int(n.split("/")[0]) for n in names])
    patients = np.array([n.split("/")[1][:7] for n in names])
    _, sel = selection_split(y, patients, 0.15, args.split_seed)
    parts["selection"] = ([names[i] for i in sel], [imgs[i] for i in sel])
    parts["val"] = source_images(data, "val")
    for k, (part, (pnames, pimgs)) in enumerate(parts.items()):
        rng = np.random.default_rng([SEED, k])
        order = rng.permutation(len(pnames))
        site_of = np.empty(len(pnames), dtype=object)
        keys = list(SITES)
        for j, i in enumerate(order):
            site_of[i] = args.one_site or keys[j % len(keys)]
        for i, (name, img) in enumerate(zip(pnames, pimgs)):
            site = site_of[i]
            img_rng = np.random.default_rng([SEED, k, i])
            res = ONE_SITE[site](img, img_rng)
            assert res.dtype == np.uint8 and res.shape == (SIZE, SIZE)
            dest = out / part / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(dest), res)
            rows.append((part, name.split("/")[0], name.split("/")[1], site))
    with open(out / "MANIFEST.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["split", "grade", "name", "site"])
        w.writerows(rows)
    print(f"wrote {len(rows)} images under {out}")


def load_tree(root: Path, names):
    """Preprocessed (contract) images of root/<name> for the given names, and their grades."""
    import kneeprep

    return np.stack([kneeprep.load(root / n) for n in names]), np.array([int(n.split("/")[0]) for n in names])


def model_logits(model_path: Path):
    """A function preprocessed uint8 images -> mean logits of each image and its mirror."""
    from train import predict_logits, to_input

    if model_path.suffix == ".onnx":
        from export import ort_logits

        def one(x):
            return ort_logits(model_path, to_input(x))
    else:
        import keras

        model = keras.models.load_model(model_path / "model.keras" if model_path.is_dir() else model_path,
                                        compile=False, safe_mode=False)

        def one(x):
            return predict_logits(model, x)
    return lambda x: (one(x) + one(x[:, :, ::-1])) / 2


def call_figures(oa, y):
    """Sensitivity, specificity and accuracy of the OA calls `oa` (bool) against grades `y`."""
    oa_true = y >= 2
    return (float((oa & oa_true).sum() / oa_true.sum()), float((~oa & ~oa_true).sum() / (~oa_true).sum()),
            float((oa == oa_true).mean()))


def oa_figures(logits, y):
    sensitivity, specificity, _ = call_figures(logits.argmax(1) >= 2, y)
    return dict(oa_sensitivity=sensitivity, oa_specificity=specificity)


def p_oa(logits, temperature):
    """P(KL >= 2) from the temperature-calibrated probabilities, as the appliance computes it."""
    from train import probabilities

    return probabilities(logits, temperature)[:, 2:].sum(1)


def oa_threshold(score, y, target):
    """The highest threshold on `score` whose sensitivity (score >= threshold) reaches `target`."""
    positives = np.sort(score[y >= 2])[::-1]
    return float(positives[int(np.ceil(target * len(positives))) - 1])


def read_manifest(sim: Path):
    """The rows of SIM/MANIFEST.csv (split, grade, name, site), which `write` made."""
    try:
        return list(csv.DictReader(open(sim / "MANIFEST.csv")))
    except FileNotFoundError:
        sys.exit(f"{sim}/MANIFEST.csv not found: make the simulated sites first (simulated_site.py write)")


def evaluate(args):
    from train import fit_temperature, summarize

    data, sim = Path(args.data), Path(args.sim)
    manifest = read_manifest(sim)
    names = {p: [f"{r['grade']}/{r['name']}" for r in manifest if r["split"] == p] for p in ("selection", "val")}
    site = {p: np.array([r["site"] for r in manifest if r["split"] == p]) for p in ("selection", "val")}
    sets = {}
    for part in ("selection", "val"):
        plain_root = data / ("val" if part == "val" else "train")
        sets[f"{part} plain"] = load_tree(plain_root, names[part])
        sets[f"{part} simulated"] = load_tree(sim / part, names[part])
    results = {}
    for model_path in args.models:
        logits_of = model_logits(Path(model_path))
        logits = {k: logits_of(x) for k, (x, _) in sets.items()}
        t = fit_temperature(logits["selection plain"], sets["selection plain"][1])
        threshold = oa_threshold(p_oa(logits["selection plain"], t), sets["selection plain"][1], args.target_sensitivity)
        res = {"temperature": t, "oa_threshold": threshold, "oa_target_sensitivity": args.target_sensitivity}
        print(f"{model_path} (T {t:.3f}, mean logits of image and mirror)")
        for k, (_, y) in sets.items():
            m = summarize(logits[k], y, t)
            m.update(oa_figures(logits[k], y))
            sens, spec, acc = call_figures(p_oa(logits[k], t) >= threshold, y)
            m.update(oa_call_sensitivity=sens, oa_call_specificity=spec, oa_call_accuracy=acc)
            if k.endswith("simulated"):
                part = k.split()[0]
                m["per_site_accuracy"] = {s: float((logits[k].argmax(1)[site[part] == s] == y[site[part] == s]).mean())
                                          for s in SITES}
            m["pred"] = logits[k].argmax(1).tolist()
            res[k] = m
            print(f"  {k:<20} acc {m['accuracy']:.4f} qwk {m['qwk']:.4f} mae {m['mae']:.4f} "
                  f"OA acc {m['binary_accuracy']:.4f} sens {m['oa_sensitivity']:.4f} spec {m['oa_specificity']:.4f} "
                  f"nll {m['nll']:.4f}")
            print(f"  {'':<20} OA call at P(KL>=2) >= {threshold:.3f}: acc {acc:.4f} sens {sens:.4f} spec {spec:.4f}")
            if "per_site_accuracy" in m:
                print("    per site: " + " ".join(f"{s} {a:.3f}" for s, a in m["per_site_accuracy"].items()))
        results[str(model_path)] = res
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


def decide(args):
    def figures(path):
        (res,) = json.loads(Path(path).read_text()).values()
        return res

    old, new = figures(args.shipped), figures(args.new)
    keys = ("accuracy", "qwk", {"grade-oa": "binary_accuracy", "operating-point": "oa_call_accuracy"}[args.rule])
    print(f"rule {args.rule}")
    ok = True
    for part, test, what in (("selection plain", lambda o, n: n >= o - 0.010, "not worse than -0.010"),
                             ("selection simulated", lambda o, n: n > o, "higher")):
        for k in keys:
            o, n = old[part][k], new[part][k]
            passed = test(o, n)
            ok &= passed
            print(f"{part:<20} {k:<16} shipped {o:.4f} new {n:.4f} ({n - o:+.4f}; {what}: {'yes' if passed else 'NO'})")
    print("decision: " + ("SHIP the new run" if ok else "do NOT ship: keep the shipped model"))


def refusals(args):
    manifest = read_manifest(Path(args.sim))
    site = {(r["split"], r["grade"], r["name"]): r["site"] for r in manifest}
    totals = Counter((r["split"], r["site"]) for r in manifest)
    refused = [Path(line.partition(": rejected: ")[0]).parts[-3:] for line in open(args.log)
               if ": rejected: " in line]
    unknown = [p for p in refused if tuple(p) not in site]
    if unknown:
        sys.exit(f"{'/'.join(unknown[0])} is not in {args.sim}/MANIFEST.csv: was the log made on another folder?")
    print(f"refused: {len(refused)}")
    for (split, name), n in Counter((split, site[(split, g, f)]) for split, g, f in refused).most_common():
        print(f"  {split} {name:10s} {n:4d} of {totals[(split, name)]}")


def sensitivity(text):
    """An argparse type: a target sensitivity in (0, 1]."""
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"a target sensitivity is in (0, 1], not {text}")
    return value


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(HERE / "../../shared/data/kneeKL224"))
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write", help="write the simulated-site copies of selection and val")
    w.add_argument("--out", default="/work/simsite")
    w.add_argument("--split-seed", type=int, default=42, help="train.py's seed (its selection slice)")
    w.add_argument("--one-site", choices=sorted(ONE_SITE), help="every image through this one site (e.g. scanner: one other scanner) instead of the seven in turn")
    e = sub.add_parser("eval", help="figures of models on plain and simulated selection and val")
    e.add_argument("models", nargs="+")
    e.add_argument("--sim", default="/work/simsite")
    e.add_argument("--json", help="also write every figure (and each image's grade) here")
    e.add_argument("--target-sensitivity", type=sensitivity, default=0.90,
                   help="the OA call's target sensitivity on the plain selection slice (the appliance's default)")
    d = sub.add_parser("decide", help="the ship rule on two `eval --json` files")
    d.add_argument("shipped")
    d.add_argument("new")
    d.add_argument("--rule", choices=("operating-point", "grade-oa"), default="operating-point",
                   help="how the OA accuracy is counted (see above); grade-oa reproduces the 2026-12-01 decision")
    r = sub.add_parser("refusals", help="the images `kneescreen eval` refused, per simulated site")
    r.add_argument("log", help="eval's stderr")
    r.add_argument("--sim", default="/work/simsite")
    args = p.parse_args()
    {"write": write, "eval": evaluate, "decide": decide, "refusals": refusals}[args.cmd](args)


if __name__ == "__main__":
    main()
