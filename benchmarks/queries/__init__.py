"""Benchmark of queries/: every public read function at several sizes, and record_generation
under load.

    uv run python -m benchmarks.queries [--sizes 1000000,10000000] [--orgs N] [--days N]
        [--repeat N] [--naive-max N] [--seconds S] [--rounds N] [--explain] ...

What it does, in order:

1. For each size, loads demo data (``tooling.demo_data.seed_demo_data``) into a database
   named after it, ``dashboard_bench_<size>`` on the project's embedded PostgreSQL (or,
   one size after another, into the database of ``BENCH_DATABASE_URL``, whose contents
   are replaced). A load with the same parameters is reused; ``--reload`` forces one.
2. Times every read of the shared registry (``tests/queries/read_functions.py``) and the
   benchmark's own deeper variants (90 days, cursor pages, filters), p50/p95 over
   ``--repeat`` calls after a warm-up, for the largest and a median organization by
   generation count and once across organizations; beside them, up to ``--naive-max``
   generations, the naive answer: ORM rows into pandas, then ``groupby``.
3. Prints one table per size and the growth table: the same reads side by side, a column
   per size, marked against the targets (per-organization reads of the largest tenant
   p95 <= 20 ms, cross-organization reads p95 <= 50 ms).
4. On the largest size, measures the throughput of ``record_generation`` from 8 threads,
   on the largest organization and spread over many, beside the same transaction in
   plain SQL run by ``pgbench``; then puts the database back as it was loaded.

Modules: ``database`` (where to and what is loaded), ``cases`` (what is read),
``naive`` (the pandas baselines), ``reads`` (timing them), ``writes`` (record_generation
against pgbench), ``report`` (the markdown tables), ``main`` (the command line).
"""
