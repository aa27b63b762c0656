"""Run the benchmarks in order: `.venv/bin/python -m bench [--quick] [NAME ...]` (`make bench` runs them all).

--quick runs each at a tenth of its scale, as a smoke test; NAME picks benchmarks (compute, check, persist,
query, endpoint, audit, signatures, binder, deviations, amendments, import, sponsor, reconcile). Figures and
goals: docs/performance.md.
Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import time

from bench import (
    amendments,
    audit_verify,
    binder_export,
    check_csv,
    compute,
    deviations,
    endpoint,
    import_events,
    persist,
    query,
    reconcile,
    signatures,
    sponsor_package,
)

BENCHMARKS = {
    "compute": lambda quick: compute.main(10_000 if quick else 100_000),
    "check": check_csv.main,
    "persist": persist.main,
    "query": query.main,
    "endpoint": endpoint.main,
    "audit": audit_verify.main,
    "signatures": signatures.main,
    "binder": binder_export.main,
    "deviations": deviations.main,
    "amendments": amendments.main,
    "import": import_events.main,
    "sponsor": lambda quick: sponsor_package.main(quick),
    "reconcile": reconcile.main,
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the scale: a smoke run")
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(BENCHMARKS))
    args = parser.parse_args()
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    print(
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs,"
        f" load average {' '.join(f'{load:.2f}' for load in os.getloadavg())}{', quick' if args.quick else ''}"
    )
    for name in args.names or BENCHMARKS:
        began = time.perf_counter()
        BENCHMARKS[name](args.quick)
        print(f"  ({name} took {time.perf_counter() - began:.0f} s)\n", flush=True)


if __name__ == "__main__":
    main()
