"""The study's report: the table printed by ``compare`` and the optional plot."""
import math
import os

__all__ = ["format_table", "changes", "format_changes", "plot", "plot_problem"]


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

def _spread(result):
    samples = result.get("speedup_samples")
    return (min(samples), max(samples)) if samples else None

def changes(before, after):
    """Each case both runs have (lists of ``run_case`` results), its speedup's change from
    ``before`` to ``after``: ``{"family", "case", "reference", "before", "after",
    "change", "band", "verdict"}``.

    ``band`` is the change's noise band, ``(min_after / max_before, max_after /
    min_before)`` over the runs' per-round ratios; the verdict is ``'slower'`` or
    ``'faster'`` only when the whole band is on one side of 1 (every round of one run
    beyond every round of the other), ``'within noise'`` otherwise (``band`` None,
    verdict ``'no samples'``, for a run recorded without its per-round ratios).
    """
    def key(r):
        return r["family"], r["case"], r["reference"]
    old = {key(r): r for r in before}
    rows = []
    for new in after:
        prev = old.get(key(new))
        if prev is None:
            continue
        a, b = _spread(new), _spread(prev)
        band = None if a is None or b is None else (a[0] / b[1], a[1] / b[0])
        verdict = ("no samples" if band is None else "slower" if band[1] < 1
                   else "faster" if band[0] > 1 else "within noise")
        rows.append({"family": new["family"], "case": new["case"],
                     "reference": new["reference"], "before": prev["speedup"],
                     "after": new["speedup"], "change": new["speedup"] / prev["speedup"],
                     "band": band, "verdict": verdict})
    return rows

def format_changes(rows, unmatched=0):
    """``changes`` as a table, and a line counting the verdicts."""
    header = ("case", "reference", "before", "after", "change", "noise band", "verdict")
    table = [header] + [(r["family"] + ": " + r["case"], r["reference"], f"{r['before']:.2f}x",
                         f"{r['after']:.2f}x", f"{r['change']:.2f}x",
                         "-" if r["band"] is None else f"{r['band'][0]:.2f}-{r['band'][1]:.2f}x",
                         r["verdict"]) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i in (0, 1, 6) else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
             for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    counts = {v: sum(r["verdict"] == v for r in rows)
              for v in ("slower", "faster", "within noise", "no samples")}
    lines.append(", ".join(f"{n} {v}" for v, n in counts.items() if n)
                 + f" of {len(rows)} cases both runs timed"
                 + (f"; {unmatched} only in this run" if unmatched else ""))
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
