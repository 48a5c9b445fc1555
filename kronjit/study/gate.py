"""``python -m kronjit gate BASE [HEAD]``: did a change make kronjit slower?

Both commits' sources are exported from git into temporary directories (``HEAD``
omitted: the working tree as it is).  Each measuring round is a fresh process per
commit (``_gate_child.py``) timing kronjit against its numpy/scipy reference side by
side on a few cases per kernel family, with the same timing code and references for
both commits; what is compared is that speedup, which moves much less with the
machine's load than a time does.  Rounds alternate between the commits in ``ABBA``
order (a drift in the machine's speed falls on both alike), after one warm-up round
each (JIT compilation, disk caches).  Each case's effect is the ratio of its median
speedups, HEAD over BASE; its noise band a bootstrap interval of that ratio.  A case
is called slower only when the whole band is below 1 *and* the effect is below
``1 - min_effect``: a difference too small to matter, or not told apart from noise,
is not reported.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from .report import text_table

__all__ = ["gate", "export_tree", "verdicts", "format_verdicts", "add_arguments", "run",
           "MIN_EFFECT", "CONFIDENCE"]

#: Changes smaller than this are not called, however clear (10%).
MIN_EFFECT = 0.10
#: The noise band's coverage: a two-sided bootstrap interval.
CONFIDENCE = 0.95
_CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_gate_child.py")


def export_tree(rev, into):
    """The kronjit source of git revision ``rev`` (of the repository around the current
    directory), exported into directory ``into``; ValueError if git cannot."""
    archive = subprocess.run(["git", "archive", "--format=tar", rev, "kronjit"],
                             capture_output=True)
    if archive.returncode:
        raise ValueError(f"git cannot export {rev!r}: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", into], input=archive.stdout, check=True)
    return into


def _working_tree():
    """The top of the git checkout around the current directory, where its kronjit is."""
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True,
                         text=True)
    if top.returncode or not os.path.isdir(os.path.join(top.stdout.strip(), "kronjit")):
        raise ValueError("run the gate inside a git checkout of kronjit")
    return top.stdout.strip()


def _round(tree, rounds, threads, cache):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, _CHILD, tree, str(rounds), str(threads)],
                          capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode:
        raise RuntimeError(f"measuring {tree} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _band(base, head, seed=0, resamples=4000):
    rng = np.random.default_rng(seed)
    b = rng.choice(base, (resamples, len(base)))
    h = rng.choice(head, (resamples, len(head)))
    ratios = np.median(h, axis=1) / np.median(b, axis=1)
    tail = (1 - CONFIDENCE) / 2 * 100
    return tuple(float(v) for v in np.percentile(ratios, [tail, 100 - tail]))


def verdicts(base, head, min_effect=MIN_EFFECT):
    """Per case: ``(effect, band, verdict)`` from lists of per-round speedups ``base`` and
    ``head`` (``{case: [speedup, ...]}``); verdict ``'slower'``, ``'faster'``, ``'same'``
    or ``'n/a'`` (a commit without the case)."""
    out = {}
    for case in base:
        b, h = base[case], head.get(case, [])
        if not b or not h or None in b or None in h:
            out[case] = (None, None, "n/a")
            continue
        effect = float(np.median(h) / np.median(b))
        band = _band(b, h)
        verdict = ("slower" if band[1] < 1 and effect < 1 - min_effect else
                   "faster" if band[0] > 1 and effect > 1 + min_effect else "same")
        out[case] = (effect, band, verdict)
    return out


def gate(base_rev, head_rev=None, rounds=6, inner=5, threads=None, min_effect=MIN_EFFECT,
         echo=print):
    """Measure ``base_rev`` and ``head_rev`` (None: the working tree) in ``rounds`` rounds
    each (``inner`` side-by-side repeats per case and round) on ``threads`` kernel
    threads (default two, or one on a single core); ``(verdicts, samples)``."""
    threads = threads or min(2, os.cpu_count() or 1)
    with tempfile.TemporaryDirectory(prefix="kronjit-gate-") as tmp:
        trees = {}
        for side, rev in (("base", base_rev), ("head", head_rev)):
            if rev is None:
                trees[side] = _working_tree()
            else:
                os.makedirs(os.path.join(tmp, side))
                trees[side] = export_tree(rev, os.path.join(tmp, side))
        caches = {side: os.path.join(tmp, f"cache-{side}") for side in trees}
        samples = {"base": {}, "head": {}}
        order = ["base", "head", "head", "base"] * ((rounds + 1) // 2)
        for side in ("base", "head"):  # warm-up: compile into each cache, not counted
            _round(trees[side], 1, threads, caches[side])
        for i, side in enumerate(order[:2 * rounds], 1):
            echo(f"round {i}/{2 * rounds}: {side}")
            for case, speedup in _round(trees[side], inner, threads, caches[side]).items():
                samples[side].setdefault(case, []).append(speedup)
    return verdicts(samples["base"], samples["head"], min_effect), samples


def format_verdicts(results, samples):
    """The gate's table: each case's median speedups, effect, noise band and verdict."""
    rows = [("case", "base", "head", "effect", f"{CONFIDENCE:.0%} band", "verdict")]
    for case, (effect, band, verdict) in results.items():
        b, h = samples["base"].get(case), samples["head"].get(case)
        rows.append((case, "-" if effect is None else f"{np.median(b):.2f}x",
                     "-" if effect is None else f"{np.median(h):.2f}x",
                     "-" if effect is None else f"{effect:.2f}x",
                     "-" if band is None else f"{band[0]:.2f}-{band[1]:.2f}x", verdict))
    return "\n".join(text_table(rows, left=(0, 5)))


def add_arguments(parser):
    parser.add_argument("base", metavar="BASE", help="the git revision to compare against")
    parser.add_argument("head", metavar="HEAD", nargs="?",
                        help="the git revision to judge (default: the working tree)")
    parser.add_argument("--rounds", type=int, default=6,
                        help="measuring rounds per revision (default 6)")
    parser.add_argument("--min-effect", type=float, default=MIN_EFFECT,
                        help=f"smallest change reported (default {MIN_EFFECT})")


def run(args):
    """Exit status 1 when a case is slower, 0 otherwise, 2 on a usage error."""
    if args.rounds < 2:
        print(f"--rounds must be at least 2, got {args.rounds}", file=sys.stderr)
        return 2
    try:
        results, samples = gate(args.base, args.head, rounds=args.rounds,
                                min_effect=args.min_effect,
                                echo=lambda msg: print(msg, file=sys.stderr, flush=True))
    except ValueError as exc:
        print(f"gate: {exc}", file=sys.stderr)
        return 2
    print(f"kronjit-over-reference speedups, {args.head or 'working tree'} against "
          f"{args.base}: medians of {args.rounds} rounds each (ABBA order); effect = head / "
          f"base; a case is slower only when its band is below 1x and the effect below "
          f"{1 - args.min_effect:.2f}x")
    print(format_verdicts(results, samples))
    slower = [case for case, (_, _, v) in results.items() if v == "slower"]
    print(f"slower: {', '.join(slower)}" if slower else "no case is slower")
    return 1 if slower else 0
