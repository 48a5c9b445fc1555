"""Command line: ``python -m kronjit compare``, ``report``, ``gate``, ``info`` and
``precompile``."""
import argparse
import os
import sys


def _prog():
    """How the user called us: the ``kronjit`` console script, or ``python -m kronjit``."""
    return "kronjit" if os.path.basename(sys.argv[0]) == "kronjit" else "python -m kronjit"


def main(argv=None):
    from . import __version__
    parser = argparse.ArgumentParser(prog=_prog(),
                                     description="kronjit: structured-matrix kernels.")
    parser.add_argument("--version", action="version", version=f"kronjit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="report versions, how kernels run in parallel, threads and cache")
    pre = sub.add_parser("precompile", help="compile the kernels for the common dtypes into "
                         "the on-disk cache (container images, cluster workers)")
    pre.add_argument("--only", action="append", metavar="FAMILY",
                     help="only this family (repeatable): dense (with the vec-trick and the "
                          "operators), sparse, structured, toeplitz")
    pre.add_argument("--jobs", type=int, default=None,
                     help="processes to compile in (default: one per family, at most the "
                          "CPU count)")
    from .study.cli import add_arguments, add_report_arguments
    add_arguments(sub.add_parser("compare", help="time kronjit against its references"))
    add_report_arguments(sub.add_parser(
        "report", help="one self-contained HTML page (tables, plots) over compare --json runs"))
    from .study import gate
    gate.add_arguments(sub.add_parser(
        "gate", help="did a change make kronjit slower? two git revisions, side by side"))
    args = parser.parse_args(argv)
    if args.command == "info":
        from ._info import info
        report = info(start_threads=True)
        width = max(map(len, report))
        for key, value in report.items():
            print(f"{key:<{width}}  {value}")
        return 0
    if args.command == "precompile":
        if args.jobs is not None and args.jobs < 1:
            parser.error("--jobs must be at least 1")
        from ._precompile import precompile
        try:
            precompile(args.only, args.jobs)
        except (RuntimeError, ValueError) as exc:
            print(f"{parser.prog} precompile: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.command == "gate":
        return gate.run(args)
    if args.command == "report":
        from .study.cli import report
        return report(args)
    from .study.cli import run
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
