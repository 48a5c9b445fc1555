"""``python -m kronjit gate``: its verdicts, its rounds, and its measuring child."""
import json
import os
import subprocess
import sys

import pytest

from kronjit.study import gate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_case_is_slower_only_beyond_noise_and_the_minimum_effect():
    base = {"clear": [2.0, 2.05, 1.95, 2.02], "noisy": [2.0, 1.0, 3.0, 1.5],
            "small": [2.0, 2.01, 1.99, 2.0], "sped up": [1.0, 1.02, 0.98, 1.0],
            "missing": [1.0, 1.0], "new in head": [None, None]}
    head = {"clear": [1.5, 1.55, 1.45, 1.52], "noisy": [1.5, 0.8, 2.6, 1.1],
            "small": [1.9, 1.91, 1.89, 1.9], "sped up": [1.5, 1.52, 1.48, 1.5],
            "new in head": [1.0, 1.0]}
    got = gate.verdicts(base, head)
    assert got["clear"][2] == "slower"
    assert got["clear"][0] == pytest.approx(1.51 / 2.01, rel=0.01)
    low, high = got["clear"][1]
    assert low < got["clear"][0] < high < 1
    assert got["noisy"][2] == "same"  # effect 0.66x, but the band reaches past 1x
    assert got["small"][2] == "same"  # clearly below 1x, but by 5%: under min_effect
    assert gate.verdicts(base, head, min_effect=0.02)["small"][2] == "slower"
    assert got["sped up"][2] == "faster"
    assert got["missing"] == (None, None, "n/a") and got["new in head"][2] == "n/a"
    table = gate.format_verdicts(got, {"base": base, "head": head})
    assert "clear" in table and "slower" in table and "0.75x" in table


def test_rounds_alternate_abba_after_a_warm_up_each(monkeypatch, tmp_path):
    calls = []

    def fake_round(tree, rounds, threads, cache):
        side = "base" if tree.rstrip(os.sep).endswith("base") else "head"
        calls.append((side, rounds))
        return {"kron": 2.0 if side == "base" else 1.5}
    monkeypatch.setattr(gate, "_round", fake_round)
    monkeypatch.chdir(ROOT)
    results, samples = gate.gate("HEAD", "HEAD", rounds=3, inner=4, echo=lambda m: None)
    assert calls[:2] == [("base", 1), ("head", 1)]  # warm-ups, not counted
    assert [side for side, _ in calls[2:]] == ["base", "head", "head", "base", "base", "head"]
    assert all(rounds == 4 for _, rounds in calls[2:])
    assert samples == {"base": {"kron": [2.0] * 3}, "head": {"kron": [1.5] * 3}}
    assert results["kron"][2] == "slower"


def test_export_tree_and_bad_revisions(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    tree = gate.export_tree("HEAD", str(tmp_path))
    assert os.path.exists(os.path.join(tree, "kronjit", "__init__.py"))
    with pytest.raises(ValueError, match="git cannot export 'no-such-revision'"):
        gate.export_tree("no-such-revision", str(tmp_path))


@pytest.mark.parametrize("argv,words", [(["no-such-revision"], "git cannot export"),
                                        (["HEAD", "--rounds", "1"], "at least 2")])
def test_gate_refuses_bad_arguments_before_measuring(argv, words, monkeypatch, capsys):
    from kronjit.__main__ import main
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(gate, "_round", lambda *a: pytest.fail("a round ran"))
    assert main(["gate", *argv]) == 2
    assert words in capsys.readouterr().err


@pytest.mark.subprocess
def test_the_measuring_child_times_every_case_of_a_tree():
    proc = subprocess.run([sys.executable, gate._CHILD, ROOT, "1", "1"], capture_output=True,
                          text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    speedups = json.loads(proc.stdout.strip().splitlines()[-1])
    assert any(case.startswith("kron ") for case in speedups)
    assert any(case.startswith("sparse.kron ") for case in speedups)
    assert any(case.startswith("kron_matvec ") for case in speedups)
    assert all(isinstance(v, float) and v > 0 for v in speedups.values()), speedups
