"""Run-to-run spread of kronjit's calls: ``python benchmarks/steadiness.py [--quick]``.

For every case of ``python -m kronjit compare`` (the ``programs`` family
aside), one warm-up call and then 30 consecutive calls of kronjit's side, as a
program would make them; prints the median and the max/median spread of each
case, worst first.  On a quiet machine every spread should be at most 1.5.
"""
import argparse
import statistics
import sys
import time

from kronjit.study import cases as study_cases


def spreads(cases, calls=30):
    """(case, median seconds, max/median) for each case."""
    rows = []
    for case in cases:
        try:
            _, ours, _ = case.setup()
        except study_cases.CaseSkipped:
            continue
        ours()
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            ours()
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        rows.append((case, median, max(times) / median))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the --quick cases only")
    parser.add_argument("--calls", type=int, default=30)
    args = parser.parse_args(argv)
    cases = [c for c in study_cases.cases() if c.family != "programs" and (c.quick or not args.quick)]
    rows = spreads(cases, args.calls)
    for case, median, spread in sorted(rows, key=lambda r: -r[2]):
        print(f"{spread:6.2f}  {median * 1e3:9.3f} ms  {case.family}: {case.name}")
    worst = max(spread for _, _, spread in rows)
    print(f"worst max/median spread over {args.calls} calls: {worst:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
