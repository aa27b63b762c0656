"""The import benchmarks (`import events`, `import sdtm`) run end to end at a tiny scale on both engines, so they
cannot rot; their timings are never asserted (what it checks: every participant enrolled at one of the 100 sites,
the ratios printed)."""

from __future__ import annotations

import bench.common
from bench import import_events as bench_import
from tests.conftest import POSTGRES_URL, bench_engines


def test_the_import_benchmark_runs_on_both_engines_at_a_tiny_scale(monkeypatch, capsys):
    monkeypatch.setattr(bench.common, "POSTGRES_URL", POSTGRES_URL)  # the tests' server, as the `db` fixture's
    bench_import.main(scale=0.001)  # 100 participants, 1,000 rows
    out = capsys.readouterr().out
    engines = bench_engines(out)
    for kind in engines:
        assert f"  {kind:<8}  1,000 rows, 100 participants at 100 sites" in out
        assert f"{kind} import / raw executemany: ratio" in out and f"{kind} peak memory growth" in out
        assert f"  {kind:<8}  raw executemany of the " in out and "rows the import stored, same indexes" in out
        assert "(100 participants, 100 events, " in out
        assert f"  {kind:<8}  SDTM: 1,000 rows (SV and DS), DM of 100 participants" in out
        assert f"{kind} import sdtm / raw executemany: ratio" in out and f"{kind} import sdtm peak memory" in out
    assert out.count("(100 participants, 100 events, 900 visits)") == 2 * len(engines)  # events, then SDTM
