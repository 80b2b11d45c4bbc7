"""crmkit's benchmarks: ``python -m benchmarks`` (``make bench``).

Each ``benchmarks/bench_<name>.py`` module exposes ``run(quick: bool) -> list[dict]``; it may
also accept a keyword-only ``database`` (a database URL, from ``--database``). A row is a
measurement *and* its baseline taken in the same process, on the same data, so the ratio
means something on any machine: ``name, figure, baseline, ratio, unit, notes``. Nothing here
asserts a time; benchmarks assert only that the measured path and its baseline computed the
same result. See ``benchmarks/README.md`` for what is measured and the recorded figures.
"""
