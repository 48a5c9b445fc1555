"""The study's reports: the table ``compare`` prints, its optional plot, the changes
against an earlier run, and ``report``'s HTML page over several runs."""
import html
import io
import os
import re

__all__ = ["format_table", "text_table", "changes", "format_changes", "plot", "plot_problem",
           "matplotlib_problem", "html_report"]


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
    return "\n".join(text_table(rows) + ["", TABLE_FOOTER])

def text_table(rows, left=(0, 1)):
    """``rows`` of strings (the first the header) as aligned lines, a rule under the
    header: the columns in ``left`` flush left, the others flush right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i in left else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines

#: What ``format_table``'s columns mean, printed under it.
TABLE_FOOTER = """\
speedup: reference time / kronjit time, the median over rounds timed side by side.
fill: the case's limit, the time of a write pass over the output (constructors),
  one memory pass, or a GEMM of the same flops (products and solves); of fill bw: that
  time / kronjit's, 100% = at the limit ("-": the case states none).
peak/result: the peak memory a kronjit call allocates / the size of its result.
(a / b GFLOP/s): kronjit's and the reference's rates, for cases that count flops."""

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
    lines = text_table(table, left=(0, 1, 6))
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

def matplotlib_problem(what="--plot"):
    """Why ``what`` cannot draw (matplotlib is not installed), or None."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return f"{what} needs matplotlib (python -m pip install matplotlib)"
    return None

def plot_problem(path):
    """Why ``--plot path`` cannot be drawn (no matplotlib, a format it cannot write), or None."""
    missing = matplotlib_problem()
    if missing:
        return missing
    from matplotlib.figure import Figure
    formats = Figure().canvas.get_supported_filetypes()
    ext = os.path.splitext(path)[1].lstrip(".").lower()
    if ext not in formats:
        return (f"--plot {path}: the file name must end in a format matplotlib writes "
                f"({', '.join('.' + f for f in sorted(formats))})")
    return None

def plot(results, path=None, title=""):
    """Each case's speedup over its reference, one panel per family, a row per case
    (names never overprint); written to ``path``, or returned as a matplotlib figure
    when ``path`` is None.

    A filled marker is kronjit's speedup; an open one the speedup a call running at
    the case's limit would have (reference time / limit time: a write pass for
    constructors, one memory pass or a same-flop GEMM for products and solves); the
    dashed line is 1x.  The figure's caption says so.
    """
    import matplotlib
    if path is not None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    families = list(dict.fromkeys(r["family"] for r in results))
    keys = {f: list(dict.fromkeys(_key(r) for r in results if r["family"] == f))
            for f in families}
    heights = [len(keys[f]) + 2.5 for f in families]
    fig, axes = plt.subplots(len(families), 1, figsize=(10, 0.3 * sum(heights) + 1.2),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, family in zip(axes[:, 0], families):
        _speedup_panel(ax, keys[family], [("kronjit", results)], family)
        ax.set_title(family, loc="left", fontsize=10)
    fig.suptitle(title)
    fig.text(0.01, 0.003, _CAPTION, fontsize=7, wrap=True, va="bottom")
    fig.tight_layout(rect=(0, 0.8 / fig.get_figheight(), 1, 1))
    if path is None:
        return fig
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None

# --- the HTML report over several runs ---------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child, th:nth-child(2), td:nth-child(2) { text-align: left; }
figure { margin: 0.5em 0; } figcaption { font-size: 0.85em; color: #555; max-width: 60em; }
"""

_CAPTION = ("Filled markers: kronjit's speedup over the reference in each run (the median "
            "of side-by-side ratios, kronjit and the reference timed alternately). Open "
            "markers: the speedup a call running at the case's limit would have in that "
            "run (the reference's time over the time of a write pass over the output, one "
            "memory pass, or a GEMM of the same flops, whichever the case names). Dashed "
            "line: 1x, as fast as the reference. Log scale.")


def _key(result):
    return result["family"], result["case"], result["reference"]


def _limit_speedup(result):
    """The speedup a call at the case's limit would have, or None."""
    return result["reference_s"] / result["fill_s"] if result.get("fill_s") else None


def _svg(fig):
    """``fig`` as an inline ``<svg>`` element (no XML prologue, no namespace URLs)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None,
                                             "Type": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    return re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", svg, count=2)


def _speedup_panel(ax, keys, runs, family):
    """Rows ``keys`` (cases) of ``family``: each run's speedups and limits, into ``ax``."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    y = {key: i for i, key in enumerate(keys)}
    for color, (label, results) in enumerate(runs):
        rows = [r for r in results if r["family"] == family and _key(r) in y]
        if not rows:
            continue
        ax.scatter([r["speedup"] for r in rows], [y[_key(r)] for r in rows], color=f"C{color}",
                   zorder=3, label=f"{label}: speedup")
        limits = [(_limit_speedup(r), y[_key(r)]) for r in rows if _limit_speedup(r)]
        if limits:
            ax.scatter(*zip(*limits), facecolors="none", edgecolors=f"C{color}", zorder=3,
                       label=f"{label}: at the limit")
    ax.axvline(1.0, color="gray", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(keys)), [case for _, case, _ in keys], fontsize=8)
    ax.set_ylim(len(keys) - 0.5, -0.5)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("speedup over the reference")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def _family_plot(family, keys, runs):
    from matplotlib.figure import Figure
    fig = Figure(figsize=(9, 0.32 * len(keys) + 1.4))
    _speedup_panel(fig.subplots(), keys, runs, family)
    fig.tight_layout()
    return _svg(fig)


def _cell(text, tag="td"):
    return f"<{tag}>{html.escape(str(text))}</{tag}>"


def html_report(runs):
    """One self-contained HTML page (no scripts, styles or fonts fetched) over ``compare
    --json`` results: ``runs`` is ``[(label, data)]``.  Which run is which (commit,
    versions, threads), then per family a plot of every case's speedup in each run
    against its limit (inline SVG, matplotlib) and a table of the figures."""
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           "<title>kronjit comparison study</title>", f"<style>{_STYLE}</style></head><body>",
           "<h1>kronjit comparison study</h1>", "<h2>Runs</h2><table><tr>"]
    fields = ("run", "commit", "date", "kronjit", "numpy", "scipy", "numba", "threads",
              "machine", "cases")
    out.append("".join(_cell(f, "th") for f in fields) + "</tr>")
    for label, data in runs:
        rt = data.get("runtime", {})
        values = (label, (data.get("commit") or "-")[:12], data.get("date", "-"),
                  rt.get("kronjit"), rt.get("numpy"), rt.get("scipy"), rt.get("numba"),
                  rt.get("num_threads"), data.get("machine", rt.get("platform", "-")),
                  len(data["results"]))
        out.append("<tr>" + "".join(_cell(v) for v in values) + "</tr>")
    out.append("</table>")
    every = [r for _, data in runs for r in data["results"]]
    for family in dict.fromkeys(r["family"] for r in every):
        keys = list(dict.fromkeys(_key(r) for r in every if r["family"] == family))
        out.append(f"<h2>{html.escape(family)}</h2><figure>")
        out.append(_family_plot(family, keys, [(label, d["results"]) for label, d in runs]))
        out.append(f"<figcaption>{html.escape(_CAPTION)}</figcaption></figure>")
        head = ["case", "reference"] + [f"{label}: speedup" for label, _ in runs] + \
            ["at the limit (latest run)"]
        out.append("<table><tr>" + "".join(_cell(h, "th") for h in head) + "</tr>")
        found = [{_key(r): r for r in data["results"]} for _, data in runs]
        for key in keys:
            cells = [key[1], key[2]] + [f"{by[key]['speedup']:.2f}x" if key in by else "-"
                                        for by in found]
            last = next((by[key] for by in reversed(found) if key in by), None)
            limit = _limit_speedup(last) if last else None
            cells.append(f"{limit:.2f}x" if limit else "-")
            out.append("<tr>" + "".join(_cell(c) for c in cells) + "</tr>")
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out)
