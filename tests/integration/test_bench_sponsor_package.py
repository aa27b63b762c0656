"""The sponsor package benchmark runs end to end at a tiny scale, so it cannot rot. Its timings and memory are never
asserted; what it checks on the way is (the set-up seeds what it says, the build's child process reports every
dataset, the package verifies offline and its report stays within the page budget)."""

from __future__ import annotations

import re

import bench.common
from bench import sponsor_package
from tests.conftest import POSTGRES_URL, bench_engines


def test_the_sponsor_package_benchmark_runs_on_both_engines_at_a_tiny_scale(monkeypatch, capsys):
    monkeypatch.setattr(bench.common, "POSTGRES_URL", POSTGRES_URL)  # the tests' server, as the `db` fixture's
    sponsor_package.main(scale=0.002)
    out = capsys.readouterr().out
    assert "sponsor package: 20 participants at 2 sites, about 100 visits each, 100 deviations" in out
    engines = bench_engines(out)
    for kind in engines:
        seeded = re.search(
            rf"{kind} +seeded in \d+ s: 20 participants at 2 sites, ([\d,]+) visits .*, 100 deviations",
            out,
        )
        assert seeded is not None and int(seeded.group(1).replace(",", "")) > 20 * 90
        assert f"{kind} packages.make / pyreadstat alone: ratio" in out
        assert f"{kind} build's RSS growth / largest DataFrame: ratio" in out
        assert re.search(rf"{kind} report pages: \d+ \(goal < 40\) met", out)
        assert re.search(rf"{kind} package verifies: 0 problems \(17 files, 7 datasets checked", out)
    # Every dataset is in the package, with rows (TA: three elements for each of the two arms); SV is the largest.
    rows = re.findall(r"rows: TV (\d+), TA 6, SV ([\d,]+), DV (\d+), SUPPDV ([\d,]+), DS (\d+), DM 20", out)
    assert len(rows) == len(engines) and len(set(rows)) == 1  # the same seed gives the same study on both engines
    assert int(rows[0][0]) == 98 and int(rows[0][2]) > 0
    assert out.count("largest dataset SV") == len(engines)
    for part in ("SQL reads (exports/store)", "XPT (transport.xpt_bytes)", "WeasyPrint layout", "ZIP (SHA-256s"):
        assert out.count(part) == len(engines)
