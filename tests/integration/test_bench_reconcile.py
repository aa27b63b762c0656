"""The reconcile benchmark runs end to end at a tiny scale on both engines, so it cannot rot; its timings are never
asserted (what it checks: the imported study reconciles, the ratios and `git describe` printed)."""

from __future__ import annotations

import bench.common
from bench import reconcile as bench_reconcile
from tests.conftest import POSTGRES_URL, bench_engines


def test_the_reconcile_benchmark_runs_on_both_engines_at_a_tiny_scale(monkeypatch, capsys):
    monkeypatch.setattr(bench.common, "POSTGRES_URL", POSTGRES_URL)  # the tests' server, as the `db` fixture's
    monkeypatch.setattr(bench_reconcile, "RUNS", 1)
    bench_reconcile.main(scale=0.004)  # 20 participants
    out = capsys.readouterr().out
    assert out.startswith("reconcile: the regulated tables against the audit trail, 20 participants (")
    for kind in bench_engines(out):
        assert f"  {kind:<8}  20 participants, " in out and " entries about them" in out
        assert f"{kind} reconcile / reading the tables alone: ratio" in out
        assert f"{kind} reconcile / reading the tables and the trail: " in out
