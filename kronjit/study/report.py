"""The study's report: the table printed by ``compare`` and the optional plot."""
import math
import os

__all__ = ["format_table", "plot", "plot_problem"]


def _fmt_time(s):
    for unit, scale in (("s", 1), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"

def format_table(results):
    header = ("case", "reference", "ref time", "kronjit", "speedup", "fill", "of fill bw",
              "peak/result")
    rows = [header] + [(r["family"] + ": " + r["case"] + _rates(r), r["reference"],
                        _fmt_time(r["reference_s"]), _fmt_time(r["kronjit_s"]),
                        f"{r['speedup']:.2f}x",
                        "-" if r["fill_s"] is None else _fmt_time(r["fill_s"]),
                        "-" if r["fill_s"] is None else f"{100 * r['fill_fraction']:.0f}%",
                        f"{r['peak_memory_over_result']:.2f}") for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)

def _rates(result):
    """`` (kronjit / reference GFLOP/s)`` for cases that state their flops."""
    if "kronjit_gflops" not in result:
        return ""
    return f" ({result['kronjit_gflops']:.0f} / {result['reference_gflops']:.0f} GFLOP/s)"

def plot_problem(path):
    """Why ``--plot path`` cannot be drawn (no matplotlib, a format it cannot write), or None."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return "--plot needs matplotlib (python -m pip install matplotlib)"
    formats = Figure().canvas.get_supported_filetypes()
    ext = os.path.splitext(path)[1].lstrip(".").lower()
    if ext not in formats:
        return (f"--plot {path}: the file name must end in a format matplotlib writes "
                f"({', '.join('.' + f for f in sorted(formats))})")
    return None

def plot(results, path=None, title=""):
    """Speedup over the reference against output size, one panel per family;
    written to ``path``, or returned as a matplotlib figure when ``path`` is None.

    The dashed line is 1x; an open marker is the speedup a call running at
    the case's limit would have (reference time / limit time: a write pass
    for constructors, one memory pass or a same-flop GEMM for the
    vec-trick), joined by a dotted line to kronjit's speedup.
    """
    import matplotlib
    if path is not None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    families = list(dict.fromkeys(r["family"] for r in results))
    ncols = min(3, len(families))
    nrows = math.ceil(len(families) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.4 * ncols, 5.2 * nrows), squeeze=False)
    for ax in axes.flat[len(families):]:
        ax.set_visible(False)
    for ax, family in zip(axes.flat, families):
        rows = [r for r in results if r["family"] == family]
        size = [max(r["result_bytes"], 1) for r in rows]
        ax.scatter(size, [r["speedup"] for r in rows], color="C0", zorder=3,
                   label="kronjit speedup")
        limited = [(s, r["speedup"], r["reference_s"] / r["fill_s"])
                   for s, r in zip(size, rows) if r["fill_s"]]
        if limited:
            ax.scatter([s for s, _, _ in limited], [lim for _, _, lim in limited],
                       facecolors="none", edgecolors="C1", zorder=3, label="at the limit")
            for s, got, lim in limited:
                ax.plot([s, s], [got, lim], color="C1", linestyle=":", linewidth=1)
        for s, r in zip(size, rows):
            ax.annotate(r["case"], (s, r["speedup"]), fontsize=7, xytext=(4, -3),
                        textcoords="offset points")
        ax.axhline(1.0, color="gray", linestyle="--", linewidth=1, label="1x (reference)")
        ax.set(xscale="log", yscale="log", title=family, xlabel="output size (bytes)",
               ylabel="speedup over reference (x)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    if path is None:
        return fig
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
