#!/usr/bin/env bash
# The worked examples of docs/golden-numpy.md and docs/judge.md, as CI runs them (.ci/run): numpy checks every
# golden file with `bilevel check`, then runs TTSA with its own noise and `bilevel judge` must pass it, and the same
# script with a planted bug (stale phi) must be rejected (exit code 1). About 30 s, plus ~20 s to install numpy.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 -c 'import numpy' 2>/dev/null ||
    pip install --quiet numpy ||
    pip install --quiet --break-system-packages numpy
cargo build --release --quiet
bin=target/release/bilevel
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for golden in $(grep -L bilevel-golden-family tests/golden/*.json); do
    python3 docs/examples/check_hypergradient.py "$golden" "$tmp/theirs.json" >/dev/null
    "$bin" check "$golden" "$tmp/theirs.json" >/dev/null
done
echo "numpy hypergradients and TTSA tape replays: every golden file checks"
python3 docs/examples/ttsa_judge.py tests/golden/quadratic_2x3_ttsa.json "$tmp/ttsa.csv"
"$bin" judge "$tmp/ttsa.csv" --claim ttsa-sc/upper-err-quadratic
python3 docs/examples/ttsa_judge.py tests/golden/quadratic_2x3_ttsa.json "$tmp/bug.csv" --bug stale-phi
code=0
"$bin" judge "$tmp/bug.csv" --claim ttsa-sc/upper-err-quadratic || code=$?
if [ "$code" -ne 1 ]; then
    echo "the planted bug (stale phi) was not rejected: bilevel judge exited with $code, expected 1" >&2
    exit 1
fi
echo "the planted bug (stale phi) is rejected"
