#!/usr/bin/env python3
"""Grades every image of a folder with two kneescreen binaries (or two models) and compares.

Used to check that joint localisation leaves single-joint crops alone: run the current binary
against one built before localisation (or `--model` variants) on the kneeKL224 val crops.

  scripts/same_grades.py OLD_BIN NEW_BIN DIR [--model int8]

Prints how many images each binary graded, how many got the same grade, how many the new binary
took whole (one knee, no detector score) and, when DIR is laid out DIR/<grade>/<image>, each
binary's accuracy.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path


def grade_all(binary, files, model):
    out = {}
    for start in range(0, len(files), 200):  # keep command lines short
        chunk = files[start : start + 200]
        run = subprocess.run(
            [binary, "analyze", "--json", "--model", model, *map(str, chunk)],
            capture_output=True,
            text=True,
        )
        if run.returncode not in (0, 2):
            sys.exit(f"{binary} failed: {run.stderr}")
        for record in json.loads(run.stdout):
            out[record["file"]] = record
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("dir", type=Path)
    ap.add_argument("--model", default="int8")
    args = ap.parse_args()
    files = sorted(p for p in args.dir.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".dcm"))
    old = grade_all(args.old, files, args.model)
    new = grade_all(args.new, files, args.model)
    same = whole = graded_old = graded_new = right_old = right_new = labelled = 0
    for f in map(str, files):
        a, b = old[f], new[f]
        graded_old += a["status"] == "ok"
        graded_new += b["status"] == "ok"
        if a["status"] == b["status"] == "ok":
            same += a["grade"] == b["grade"]
        if b["status"] == "ok":
            knees = b.get("knees", [])
            whole += len(knees) == 1 and knees[0]["detector_score"] is None
        label = Path(f).parent.name
        if label.isdigit():
            labelled += 1
            right_old += a["status"] == "ok" and a["grade"] == int(label)
            right_new += b["status"] == "ok" and b["grade"] == int(label)
    n = len(files)
    print(f"{n} images; graded: old {graded_old}, new {graded_new}")
    print(f"same grade: {same}/{n} = {same / n:.4f}")
    print(f"taken whole by the new binary: {whole}/{n} = {whole / n:.4f}")
    if labelled:
        print(f"accuracy: old {right_old / labelled:.4f}, new {right_new / labelled:.4f}")


if __name__ == "__main__":
    main()
