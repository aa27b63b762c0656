"""The deviation benchmark runs end to end at a tiny scale, so it cannot rot. Its timings are never asserted;
what it checks on the way is (steady runs change nothing, an incremental run after one visit looks at one
participant, resolves one record and creates one, every queue page answers 200)."""

from __future__ import annotations

import bench.common
from bench import deviations as bench_deviations
from tests.conftest import POSTGRES_URL, bench_engines


def test_the_deviation_benchmark_runs_on_both_engines_at_a_tiny_scale(monkeypatch, capsys):
    monkeypatch.setattr(bench.common, "POSTGRES_URL", POSTGRES_URL)  # the tests' server, as the `db` fixture's
    bench_deviations.main(scale=0.002)
    out = capsys.readouterr().out
    assert "20 participants x 100 visits = 2,000 stored visits" in out
    engines = bench_engines(out)
    for kind in engines:
        assert f"{kind} steady full run / raw (the goal): ratio" in out
        assert f"{kind} incremental / steady full run: ratio" in out
    assert out.count("GET /api/studies/BENCH-DV/deviations?limit=50&offset=<random page>") == len(engines)
    assert out.count("non-200: 0") == 2 * len(engines)
