"""Writes the ROC of P(KL >= 2) on the selection slice into the model card (`models.<variant>.oa_roc`),
from which the appliance derives the OA call's threshold for its target sensitivity.

The selection slice is train.py's: patient-disjoint, grade-stratified, the same seed and fraction as
the shipped training run (card `training.seed`). Its images are linked into a temporary folder by
grade and graded by `kneescreen eval --roc-json` (the appliance's own analysis path).

    python scripts/operating_point.py [--data ../shared/data/kneeKL224] [--bin target/release/kneescreen]
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import GRADES, selection_split  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/kneeKL224")
    p.add_argument("--bin", type=Path, default=ROOT / "target/release/kneescreen")
    p.add_argument("--models-dir", type=Path, default=ROOT / "models")
    p.add_argument("--selection-fraction", type=float, default=0.15)
    args = p.parse_args()

    card_path = args.models_dir / "card.json"
    card = json.loads(card_path.read_text())
    slice_ = card["training"]["selection_slice"]
    seed = slice_.get("seed", card["training"]["seed"])
    files, y, patients = [], [], []
    for grade in range(GRADES):
        for f in sorted((args.data / "train" / str(grade)).glob("*.png")):
            files.append(f)
            y.append(grade)
            patients.append(f.name[:7])
    y, patients = np.array(y), np.array(patients)
    _, sel = selection_split(y, patients, args.selection_fraction, seed)
    expected = card["training"]["selection_slice"]["n"]
    assert len(sel) == expected, f"selection slice has {len(sel)} images, the card says {expected}"

    with tempfile.TemporaryDirectory() as tmp:
        for i in sel:
            d = Path(tmp) / "slice" / str(y[i])
            d.mkdir(parents=True, exist_ok=True)
            (d / files[i].name).symlink_to(files[i].resolve())
        for variant in card["models"]:
            out = Path(tmp) / f"roc-{variant}.json"
            subprocess.run([str(args.bin), "eval", "--model", variant, "--models-dir", str(args.models_dir),
                            "--roc-json", str(out), str(Path(tmp) / "slice")], check=True,
                           stdout=subprocess.DEVNULL)
            roc = json.loads(out.read_text())
            roc["source"] = f"selection slice of train ({len(sel)} knees, patient-disjoint)"
            card["models"][variant]["oa_roc"] = roc
            print(f"{variant}: {roc['positives']} OA, {roc['negatives']} not OA, {len(roc['points'])} points")
    card_path.write_text(json.dumps(card, indent=1) + "\n")
    print(f"{card_path} changed: sign it again (scripts/sign-models.sh RELEASE_KEY)")
    print(f"wrote {card_path}")


if __name__ == "__main__":
    main()
