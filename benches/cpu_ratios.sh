#!/usr/bin/env bash
# CPU time per iteration, noise off and on, of `bilevel run` on the quadratic family: the table of issue 12's targets
# in docs/performance.md ("The targets of issue 12 §5 at the end of session 4"). CPU time (`perf stat -e task-clock`)
# rather than wall time, because this machine is shared; per iteration = (min of 3 runs of N iterations - min of 3
# runs of 2 iterations) / (N - 2), so the instance's construction is not counted.
#
# Usage: benches/cpu_ratios.sh [BIN]   (BIN defaults to target/release/bilevel; build it with cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/bilevel}
command -v perf >/dev/null || { echo "error: needs perf (linux-tools); hint: apt install linux-perf" >&2; exit 2; }
[ -x "$bin" ] || { echo "error: $bin not found; hint: cargo build --release" >&2; exit 2; }
cpu_ms() { # algo d iters noise [problem]
    local best=""
    for _ in 1 2 3; do
        local t
        t=$(perf stat -x, -e task-clock "$bin" run --algo "$1" --problem "${5:-quadratic}" --param "d_l=$2" \
            --iters "$3" --noise "$4" 2>&1 >/dev/null | grep task-clock | cut -d, -f1)
        best=$(python3 -c "print(min(${best:-$t}, $t))")
    done
    echo "$best"
}
printf '%-8s %7s %7s %14s %14s %8s\n' algo d iters "off ms/iter" "on ms/iter" "on/off"
while read -r algo d n problem; do
    off=$(python3 -c "print(($(cpu_ms "$algo" "$d" "$n" 0 "$problem") - $(cpu_ms "$algo" "$d" 2 0 "$problem")) / ($n - 2))")
    on=$(python3 -c "print(($(cpu_ms "$algo" "$d" "$n" 0.1 "$problem") - $(cpu_ms "$algo" "$d" 2 0.1 "$problem")) / ($n - 2))")
    python3 -c "print('%-8s %7d %7d %14.5f %14.5f %8.2f' % ('$algo', $d, $n, $off, $on, $on / $off))"
done <<'CASES'
ttsa 10 50002 quadratic
stocbio 10 10002 quadratic
stable 10 50002 quadratic
ttsa 100 2002 quadratic
stocbio 100 502 quadratic
stable 100 502 quadratic
ttsa 1000 102 quadratic
stocbio 1000 22 quadratic
stable 1000 12 quadratic
ttsa 100000 42 low_rank
CASES
