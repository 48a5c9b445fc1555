"""The comparison study's measuring tools: bandwidth limits and side-by-side timing."""
import json
import re
import time

import numpy as np
import pytest

from kronjit.study import cases, cli, limits, report, timing

# 300 KiB and up take the parallel build; odd byte counts leave a ragged tail
SIZES = [0, 1, 7, 4099, 300_001]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", ["int8", "float32", "complex128", "bool"])
def test_write_pass_writes_every_byte(size, dtype):
    buf = np.zeros(size, dtype)
    assert limits.write_pass(buf) is buf
    assert (buf.view(np.uint8) == 1).all()


def test_fresh_write_pass_allocates_and_writes():
    out = limits.fresh_write_pass((301, 257), np.float64)
    assert out.shape == (301, 257) and out.dtype == np.float64
    assert (out.view(np.uint8) == 1).all()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_copy_pass_is_a_contiguous_copy(size, layout):
    rng = np.random.default_rng(size)
    x = rng.standard_normal((size, 3)) + 1j * rng.standard_normal((size, 3))
    x = {"C": x, "F": np.asfortranarray(x), "strided": x[::-1, ::2]}[layout]
    got = limits.copy_pass(x)
    assert got.dtype == x.dtype and got.flags.c_contiguous
    assert np.array_equal(got, x) and not np.shares_memory(got, x)


def test_settle_busy_waits_at_least_its_time():
    t0 = time.perf_counter()
    timing.settle(0.03)
    assert time.perf_counter() - t0 >= 0.03


def test_alternate_warms_up_then_times_in_turn(monkeypatch):
    monkeypatch.setattr(timing, "SETTLE_S", 0.0)
    log = []
    fns = [lambda name=name: log.append(name) for name in "abc"]
    times, inner = timing.alternate(fns, repeat=3, min_time=0.0)
    assert inner == 1
    # warm-up of each, one probe call of the first two, then rounds in turn
    assert "".join(log) == "abc" + "ab" + "abc" * 3
    assert [len(t) for t in times] == [3, 3, 3]
    assert all(t > 0 for ts in times for t in ts)


def test_alternate_batches_fast_calls():
    calls = []
    times, inner = timing.alternate([lambda: calls.append(1), lambda: None], repeat=2,
                                     min_time=0.005)
    assert inner > 10  # a list append takes well under 0.5 ms
    assert len(calls) == 1 + 1 + 2 * inner


def test_run_case_reports_fill_only_where_there_is_a_limit(monkeypatch):
    monkeypatch.setattr(timing, "SETTLE_S", 0.0)
    x = np.ones(1000)
    with_fill = cases.Case("t", "with", "ref", lambda: (x.copy, x.copy, x.copy))
    without = cases.Case("t", "without", "ref", lambda: (x.copy, x.copy, None))
    row = timing.run_case(with_fill, repeat=3)
    assert row["fill_s"] > 0 and row["fill_fraction"] > 0 and row["speedup"] > 0
    row = timing.run_case(without, repeat=3)
    assert row["fill_s"] is None and row["fill_fraction"] is None and row["speedup"] > 0


def test_side_by_side_is_a_ratio_of_times(monkeypatch):
    monkeypatch.setattr(timing, "SETTLE_S", 0.0)

    def slow():
        time.sleep(0.004)
    ratio = timing.side_by_side(slow, lambda: None, repeat=3, min_time=0.004)
    assert ratio > 10  # sleeping 4 ms against doing nothing


@pytest.mark.parametrize("argv,words", [
    (["--plot", "speedups"], "must end in a format"),
    (["--plot", "speedups.xyz"], "must end in a format"),
    (["--json", "/nonexistent-dir/out.json"], "cannot write there"),
    (["--repeat", "0"], "at least 1"),
    (["--only", "nonsense"], "the families are dense"),
    (["--against", "/nonexistent-dir/old.json"], "cannot read it"),
    (["--against", __file__], "not JSON"),
])
def test_bad_arguments_fail_before_any_case_runs(argv, words, monkeypatch, capsys):
    from kronjit.__main__ import main
    monkeypatch.setattr(cli, "run_case", lambda *a, **k: pytest.fail("a case ran"))
    assert main(["compare", "--quick", *argv]) == 2
    assert words in capsys.readouterr().err


def test_the_default_study_leaves_out_the_full_cases():
    every = cases.cases()
    for family, prefixes in cases.FULL_ONLY.items():
        for prefix in prefixes:  # every prefix names a case of its family
            assert any(c.full and c.family == family and c.name.startswith(prefix)
                       for c in every), prefix
    assert {c.family for c in every if not c.full} == {c.family for c in every}
    assert not any(c.quick and c.full for c in every)


def test_cases_keep_their_parameters():
    """What a case is made with reaches its results: the vec-trick's shapes, the family
    kinds, FastKron's problem and flop count (its GFLOP/s), and no case is full-only
    unless FULL_ONLY names it."""
    every = cases.cases()
    for family, keys in {"vectrick": {"shapes", "k"}, "family": {"kind", "out"},
                         "fastkron": {"m", "p", "n", "dtype", "flops"}}.items():
        mine = [c for c in every if c.family == family]
        assert mine and all(keys <= set(c.params) for c in mine), family
    assert all(isinstance(c.full, bool) for c in every)
    fastkron = next(c for c in every if c.family == "fastkron")
    x = np.ones(10)
    probe = cases.Case("t", "rates", "ref", lambda: (x.copy, x.copy, None), False,
                       {"flops": fastkron.params["flops"]})
    row = timing.run_case(probe, repeat=1, min_time=0.001)
    assert row["kronjit_gflops"] > 0 and row["reference_gflops"] > 0


@pytest.mark.parametrize("flag", [[], ["--full"], ["--quick"]])
def test_study_size_flags_select_their_cases(flag, monkeypatch, capsys):
    from kronjit.__main__ import main
    ran = []

    def record(case, **kwargs):
        ran.append(case)
        raise cases.CaseSkipped("not timed here")
    monkeypatch.setattr(cli, "run_case", record)
    assert main(["compare", "--only", "sparse", "--only", "toeplitz", *flag]) == 0
    every = [c for c in cases.cases() if c.family in ("sparse", "toeplitz")]
    want = {"--full": every, "--quick": [c for c in every if c.quick]}.get(
        flag[0] if flag else None, [c for c in every if not c.full])
    assert [(c.family, c.name, c.reference) for c in ran] == \
        [(c.family, c.name, c.reference) for c in want]
    out, err = capsys.readouterr()
    assert ("--full:" in out and cli.FULL_COST in out) == (flag == ["--full"])
    assert f"[{len(want)}/{len(want)}]" in err and "left)" in err


def test_quick_and_full_exclude_each_other(capsys):
    from kronjit.__main__ import main
    with pytest.raises(SystemExit) as exc:
        main(["compare", "--quick", "--full"])
    assert exc.value.code == 2 and "not allowed with" in capsys.readouterr().err


def _result(case, samples, family="f", reference="ref"):
    """A ``run_case`` result with these per-round speedups."""
    return {"family": family, "case": case, "reference": reference,
            "speedup": float(np.median(samples)), "speedup_samples": samples,
            "reference_s": 2e-3, "kronjit_s": 1e-3, "fill_s": None, "fill_fraction": None,
            "peak_memory_over_result": 1.0}


def test_changes_are_called_only_outside_the_noise_band():
    before = [_result("steady", [2.0, 2.1, 1.9]), _result("slowed", [4.0, 4.2, 3.9]),
              _result("sped up", [1.0, 1.1, 0.9]), _result("old file", [1.0]),
              _result("gone", [1.0, 1.0, 1.0])]
    before[3].pop("speedup_samples")
    after = [_result("steady", [1.8, 2.3, 2.0]), _result("slowed", [3.0, 3.1, 2.9]),
             _result("sped up", [1.5, 1.6, 1.4]), _result("old file", [2.0, 2.0, 2.0]),
             _result("new", [1.0, 1.0, 1.0]), _result("steady", [2.0], reference="other")]
    rows = {r["case"]: r for r in report.changes(before, after)}
    assert set(rows) == {"steady", "slowed", "sped up", "old file"}
    assert rows["steady"]["verdict"] == "within noise"
    assert rows["slowed"]["verdict"] == "slower"
    assert rows["slowed"]["band"] == pytest.approx((2.9 / 4.2, 3.1 / 3.9))
    assert rows["slowed"]["change"] == pytest.approx(3.0 / 4.0)
    assert rows["sped up"]["verdict"] == "faster"
    assert rows["old file"]["verdict"] == "no samples" and rows["old file"]["band"] is None
    table = report.format_changes(list(rows.values()), unmatched=2)
    assert "1 slower, 1 faster, 1 within noise, 1 no samples of 4 cases" in table
    assert "2 only in this run" in table and "0.69-0.79x" in table


def test_against_prints_the_changes_after_the_table(tmp_path, monkeypatch, capsys):
    from kronjit.__main__ import main
    selected = [c for c in cases.cases() if c.family == "structured" and c.quick]
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"commit": "abc", "runtime": {"kronjit": "0.0"}, "results": [
        _result(c.name, [1.0, 1.1, 0.9], c.family, c.reference) for c in selected[1:]]}))
    monkeypatch.setattr(cli, "run_case", lambda case, **kw: _result(
        case.name, [2.0, 2.1, 1.9], case.family, case.reference))
    assert main(["compare", "--quick", "--only", "structured", "--against", str(old)]) == 0
    out = capsys.readouterr().out
    assert f"against {old} (kronjit 0.0, commit abc)" in out
    assert f"{len(selected) - 1} faster of {len(selected) - 1} cases both runs timed; " \
           "1 only in this run" in out


def test_report_is_one_self_contained_page_of_every_case(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from kronjit.__main__ import main
    first = [_result("8x8 & <b>", [2.0, 2.2, 1.9], "dense", "np.kron"),
             _result("300²(1%) csr", [5.0, 5.5, 4.0], "sparse", "scipy.sparse.kron")]
    first[1]["fill_s"] = 5e-4
    second = [_result("8x8 & <b>", [2.5, 2.6, 2.4], "dense", "np.kron"),
              _result("only later", [1.5, 1.6, 1.4], "dense", "np.kron")]
    paths = []
    for name, results in (("before", first), ("after", second)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps({"commit": f"{name[:3]}123", "runtime": {
            "kronjit": "9.9", "numpy": "2.0", "num_threads": 2}, "results": results}))
    page = tmp_path / "report.html"
    assert main(["report", *map(str, paths), "-o", str(page)]) == 0
    text = page.read_text()
    assert "http" not in text and "<script" not in text and "<link" not in text
    assert not re.search(r"url\((?!#)", text) and "@import" not in text  # own ids only
    assert text.count("<svg") == 2  # one plot per family
    assert "8x8 &amp; &lt;b&gt;" in text and "<b>" not in text  # names escaped
    for word in ("only later", "300²(1%) csr", "bef123", "aft123", "2.50x",
                 "4.00x", "at the limit"):
        assert word in text, word
    assert f"wrote {page}" in capsys.readouterr().out
    paths[0].write_text("{}")
    assert main(["report", *map(str, paths), "-o", str(page)]) == 2
    assert "not the results of python -m kronjit compare" in capsys.readouterr().err


def test_plot_gives_every_case_a_row_and_ticks_as_speedups(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    results = [_result(f"case {i}", [1.5 * i + 0.5], family) for i, family in
               enumerate(["dense", "dense", "sparse", "sparse", "sparse"], 1)]
    results[0]["fill_s"] = 1e-4
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text as text, to read it back
        report.plot(results, str(tmp_path / "p.svg"), title="t")
    svg = (tmp_path / "p.svg").read_text()
    for r in results:
        assert f">{r['case']}<" in svg
    assert ">1x<" in svg and ">2x<" in svg and "10^" not in svg and "×" not in svg
    assert "at the limit" in svg and "Dashed line: 1x" in svg


def test_output_paths_are_probed_without_leaving_files(tmp_path):
    target = tmp_path / "r.json"
    assert cli._unwritable(str(target), "--json") is None
    assert not target.exists()
    existing = tmp_path / "old.json"
    existing.write_text("kept")
    assert cli._unwritable(str(existing), "--json") is None
    assert existing.read_text() == "kept"


def test_settle_only_when_asked(monkeypatch):
    waits = []
    monkeypatch.setattr(timing, "settle", lambda s=None: waits.append(s))
    timing.alternate([lambda: None, lambda: None], repeat=2, min_time=0.0)
    assert waits == []  # by default, as a program runs them
    timing.alternate([lambda: None, lambda: None], repeat=2, min_time=0.0, settle_s=0.01)
    assert waits == [0.01] * (2 + 2 * 2)  # the two probes, then every batch


def test_busy_neighbour_runs_during_the_block_and_stops():
    with cases.busy_neighbour(seconds=30) as proc:
        assert proc.poll() is None
        t0 = time.process_time()
    assert proc.poll() is not None
    assert time.process_time() - t0 < 1  # the neighbour's time is its own


def test_program_cases_agree_and_name_their_peers():
    programs = [c for c in cases.cases() if c.family == "programs"]
    names = {c.name for c in programs}
    assert any(n.startswith("cg 50 iterations") for n in names)
    assert any(n.startswith("GP scan") for n in names)
    assert sum(c.busy_neighbour for c in programs) == 4
    assert {c.reference for c in programs} >= {"kronjit, 1 thread", "np.kron"}
    # the GP scan peers compute the same numbers
    from kronjit.study.cases import gp_kronjit_step, rbf as _rbf
    from kronjit.study.references import gp_numpy
    t1, t2 = np.linspace(0, 1, 8), np.linspace(0, 2, 6)
    k1, k2, y = _rbf(t1, 0.5), _rbf(t2, 0.5), np.sin(np.arange(48.0))
    for got, want in zip(gp_kronjit_step(k1, k2, y, 0.1), gp_numpy(k1, k2, y, 0.1)):
        np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)
