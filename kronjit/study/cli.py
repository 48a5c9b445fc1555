"""``python -m kronjit compare``: arguments, the run, its outputs."""
import datetime
import json
import os
import platform
import sys
import time

from . import cases as study_cases
from .report import (changes, format_changes, format_table, html_report, matplotlib_problem,
                     plot, plot_problem)
from .timing import SETTLE_S, run_case

__all__ = ["add_arguments", "run", "add_report_arguments", "report", "source_commit"]


#: What ``--full`` costs, measured here (2 cores): said before it starts.
FULL_COST = "about 8 minutes and a peak of 7 GB of memory on 2 cores"


def add_arguments(parser):
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="small cases and few repeats (under a minute)")
    size.add_argument("--full", action="store_true",
                      help=f"every case, with the big sparse products and slow references "
                           f"the default leaves out ({FULL_COST})")
    parser.add_argument("--only", metavar="FAMILY", action="append",
                        help="run only this family (repeatable)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="repeats per case (default 7, 3 with --quick)")
    parser.add_argument("--settle", action="store_true",
                        help=f"busy-wait {SETTLE_S} s before each timed batch: isolated "
                             "figures, free of the threads the previous batch woke (by default "
                             "kronjit and its reference alternate as in a program)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--against", metavar="FILE",
                        help="then print each case's change against an earlier run's --json "
                             "results, with its noise band (the spread of the two runs' "
                             "per-round ratios)")
    parser.add_argument("--plot", metavar="FILE",
                        help="also draw speedup against output size, one panel per family "
                             "(.png or .svg; needs matplotlib)")

def run(args):
    from .._info import info
    all_cases = study_cases.cases()
    families = list(dict.fromkeys(c.family for c in all_cases))
    unknown = sorted(set(args.only or ()) - set(families))
    if unknown:
        print(f"--only: no family {', '.join(unknown)}; the families are "
              f"{', '.join(families)}", file=sys.stderr)
        return 2
    selected = [c for c in all_cases if (c.quick if args.quick else args.full or not c.full)
                and (not args.only or c.family in args.only)]
    repeat = args.repeat if args.repeat is not None else (3 if args.quick else 7)
    if repeat < 1:
        print(f"--repeat must be at least 1, got {repeat}", file=sys.stderr)
        return 2
    # every output is checked before the study runs, not after
    problems = [plot_problem(args.plot)] if args.plot else []
    problems += [_unwritable(path, flag) for flag, path in (("--json", args.json),
                                                            ("--plot", args.plot)) if path]
    before = _read_results(args.against, "--against") if args.against else None
    if isinstance(before, str):
        problems.append(before)
    problem = next((p for p in problems if p), None)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    runtime = info(start_threads=True)
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    commit = source_commit()
    print(f"kronjit {runtime['kronjit']}" + (f" (commit {commit[:12]})" if commit else "")
          + f"  numba {runtime['numba']}  numpy {runtime['numpy']}  "
          f"threads {runtime['num_threads']} ({runtime['threading_layer']})  "
          f"repeat {repeat}; medians of side-by-side ratios, "
          + (f"each batch after a {SETTLE_S} s busy-wait (--settle)" if args.settle
             else "kronjit and reference alternating as in a program"), flush=True)
    if args.full:
        print(f"--full: {len(selected)} cases, {FULL_COST}", flush=True)
    results, skipped = [], {}
    tty = sys.stderr.isatty()
    start = time.perf_counter()
    for i, case in enumerate(selected, 1):
        msg = f"[{i}/{len(selected)}] {case.family}: {case.name}"
        if i > 1:  # what is left, at the mean pace so far
            left = (time.perf_counter() - start) / (i - 1) * (len(selected) - i + 1)
            msg += f" (about {_duration(left)} left)"
        print(("\r" + msg.ljust(100)) if tty else msg, end="" if tty else "\n",
              file=sys.stderr, flush=True)
        try:
            results.append(run_case(case, repeat=repeat,
                                    settle_s=SETTLE_S if args.settle else 0.0))
        except study_cases.CaseSkipped as why:
            skipped.setdefault(str(why), []).append(case.name)
    if tty:
        print("\r" + " " * 100 + "\r", end="", file=sys.stderr)
    print(format_table(results))
    for why, names in skipped.items():
        print(f"skipped {len(names)} case(s): {why}: {', '.join(names)}")
    if before is not None:
        rows = changes(before["results"], results)
        print(f"\nagainst {args.against} (kronjit {before['runtime'].get('kronjit')}, commit "
              f"{(before.get('commit') or 'unknown')[:12]}): a change is called slower or "
              "faster only when its noise band, from every round of both runs, is all below "
              "or all above 1x")
        print(format_changes(rows, unmatched=len(results) - len(rows)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"commit": commit, "date": started, "machine": _machine(),
                       "runtime": runtime, "results": results}, f, indent=2)
        print(f"wrote {args.json}")
    if args.plot:
        plot(results, args.plot, title=f"kronjit {runtime['kronjit']}, "
             f"{runtime['num_threads']} threads ({runtime['threading_layer']})")
        print(f"wrote {args.plot}")
    return 0

def _machine():
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _duration(seconds):
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def source_commit():
    """The git commit of the kronjit source being run: that of the checkout the package
    was imported from, else of the current directory when it holds kronjit's source
    (an installed copy run from its clone); ``-dirty`` if tracked files differ from it;
    None outside a git checkout."""
    import subprocess
    from .. import __file__ as package_file
    for where in (os.path.dirname(os.path.dirname(os.path.abspath(package_file))), os.getcwd()):
        if not os.path.exists(os.path.join(where, "kronjit", "__init__.py")):
            continue
        try:
            head = subprocess.run(["git", "-C", where, "rev-parse", "HEAD"], capture_output=True,
                                  text=True, timeout=30)
            if head.returncode:
                continue
            changed = subprocess.run(["git", "-C", where, "status", "--porcelain",
                                      "--untracked-files=no"], capture_output=True, text=True,
                                     timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            continue
        return head.stdout.strip() + ("-dirty" if changed else "")
    return None


def _read_results(path, what):
    """The results ``compare --json`` wrote to ``path``, or why they cannot be read."""
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as exc:
        return f"{what} {path}: cannot read it ({exc.strerror or exc})"
    except ValueError as exc:
        return f"{what} {path}: not JSON ({exc})"
    if not (isinstance(data, dict) and isinstance(data.get("results"), list)
            and isinstance(data.get("runtime"), dict)):
        return f"{what} {path}: not the results of python -m kronjit compare --json"
    return data


def add_report_arguments(parser):
    parser.add_argument("results", nargs="+", metavar="RESULTS.json",
                        help="results of python -m kronjit compare --json, oldest first")
    parser.add_argument("-o", "--output", default="report.html", metavar="FILE",
                        help="the page to write (default report.html)")


def report(args):
    """``python -m kronjit report``: one self-contained HTML page over several runs."""
    runs = []
    for path in args.results:
        data = _read_results(path, "report:")
        if isinstance(data, str):
            print(data, file=sys.stderr)
            return 2
        runs.append((os.path.splitext(os.path.basename(path))[0], data))
    problem = matplotlib_problem("report") or _unwritable(args.output, "-o")
    if problem:
        print(problem, file=sys.stderr)
        return 2
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(html_report(runs))
    print(f"wrote {args.output}")
    return 0


def _unwritable(path, flag):
    """Why ``path`` cannot be written (checked by opening it), or None."""
    existed = os.path.exists(path)
    try:
        with open(path, "ab"):
            pass
    except OSError as exc:
        return f"{flag} {path}: cannot write there ({exc.strerror or exc})"
    if not existed:
        os.remove(path)
    return None
