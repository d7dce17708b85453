"""Benchmarks of the project, run from the repository root (``uv run python -m ...``).

``benchmarks.queries`` times every read function of queries/ at one or several data
sizes, and record_generation beside the same transaction in plain SQL.

What the benchmarks share with the tests is not copied: the read registry (every public
read function with a way to call it, ``tests/queries/read_functions.py``) and the
statement recorder (``tests/statements.py``) stay in tests/, where the test that fails on
an unregistered read function lives, and the benchmarks import them from there. Both
trees sit at the repository root, which the project's editable install puts on
``sys.path``; neither is part of the wheel.
"""
