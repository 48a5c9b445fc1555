"""Command line: ``python -m kronjit compare`` and ``python -m kronjit info``."""
import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m kronjit",
                                     description="kronjit: structured-matrix kernels.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="report versions, how kernels run in parallel, threads and cache")
    from .study.cli import add_arguments
    add_arguments(sub.add_parser("compare", help="time kronjit against its references"))
    args = parser.parse_args(argv)
    if args.command == "info":
        from ._info import info
        report = info(start_threads=True)
        width = max(map(len, report))
        for key, value in report.items():
            print(f"{key:<{width}}  {value}")
        return 0
    from .study.cli import run
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
