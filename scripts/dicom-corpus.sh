#!/usr/bin/env bash
# The DICOM tests over a public corpus: the real-world test files in pydicom's wheel (MIT,
# pydicom/data/test_files, fetched from PyPI by hash; nothing is installed). Every file must
# decode and be graded, or be refused with its reason; see tests/dicom.rs, public_corpus_when_installed.
#   scripts/dicom-corpus.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
wheel=pydicom-3.0.2-py3-none-any.whl
sha256=abf971a5440f84dbaf42c4b6758e30e62480902584f8b270b9a5d146e278a07b
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# Any Python with pip will do (only to fetch and unzip the wheel).
py=python3
$py -m pip --version >/dev/null 2>&1 || py=/usr/bin/python3
$py -m pip download -q --no-deps --only-binary=:all: pydicom==3.0.2 -d "$dir"
echo "$sha256  $dir/$wheel" | sha256sum -c --quiet
$py -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$dir/$wheel" "$dir"
KNEESCREEN_DICOM_CORPUS="$dir/pydicom/data/test_files" \
    cargo test -j 2 "$@" --test tests dicom::public_corpus -- --nocapture
