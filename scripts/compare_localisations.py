#!/usr/bin/env python3
"""Which joint crops moved between two runs of the localiser on the same folder.

    cargo run --example contact_sheet -- DIR > before.txt    (at one commit)
    cargo run --example contact_sheet -- DIR > after.txt     (at another)
    python3 scripts/compare_localisations.py before.txt after.txt

A crop "stayed" when the image has as many joints in both runs and each joint's centre moved by
at most 10 % of its earlier side and its side changed by at most 15 %. Prints the counts and each
image whose crops moved, to be looked at (the contact sheets show them).
"""
import re
import sys

LINE = re.compile(r"\s*\d+ (\S+) (.*)")
JOINT = re.compile(r"\w+ \((-?\d+),(-?\d+)\) side (\d+) score (-?[\d.]+)")


def listing(path):
    """Image name -> [(x, y, side, score)] of a contact_sheet stdout (empty when none found)."""
    try:
        lines = open(path).readlines()
    except OSError as e:
        sys.exit(f"{path}: cannot read the listing ({e.strerror})")
    out = {}
    for line in lines:
        m = LINE.match(line)
        if m and m.group(1) != "images:":  # the last line is the totals
            out[m.group(1)] = [tuple(map(float, j)) for j in JOINT.findall(m.group(2))]
    return out


def stayed(before, after):
    return len(before) == len(after) and all(
        max(abs(b[0] - a[0]), abs(b[1] - a[1])) <= 0.1 * b[2] and abs(a[2] / b[2] - 1) <= 0.15
        for b, a in zip(before, after))


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    before, after = listing(sys.argv[1]), listing(sys.argv[2])
    common = sorted(set(before) & set(after))
    if not common:
        sys.exit("the two listings have no image in common: are they of the same folder?")
    moved = [n for n in common if not stayed(before[n], after[n])]
    print(f"{len(common)} images: {len(common) - len(moved)} stayed, {len(moved)} moved")
    for n in moved:
        print(f"  {n}: {before[n]} -> {after[n]}")


if __name__ == "__main__":
    main()
