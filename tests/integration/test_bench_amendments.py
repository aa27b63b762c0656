"""The amendment-impact benchmark runs end to end at a tiny scale on both engines, so it cannot rot. Its
timings are never asserted; what it checks is (every participant looked at, the ratio printed)."""

from __future__ import annotations

import bench.common
from bench import amendments as bench_amendments
from tests.conftest import POSTGRES_URL, bench_engines


def test_the_amendment_benchmark_runs_on_both_engines_at_a_tiny_scale(monkeypatch, capsys):
    monkeypatch.setattr(bench.common, "POSTGRES_URL", POSTGRES_URL)  # the tests' server, as the `db` fixture's
    bench_amendments.run_engines(participants=20)
    out = capsys.readouterr().out
    engines = bench_engines(out)
    for kind in engines:
        assert f"  {kind:<8}  20 participants, 400 stored visits" in out
        assert f"{kind} impact / evaluate once: ratio" in out
