"""Benchmarks, one package: each module measures one thing and writes its report through
``services.bench.report`` (markdown + JSON + PNG under ``--out``, ``reports/`` by default).

``cascade bench <name>`` runs them (``services.cli.bench`` lists the commands); the ones that
need the whole product start a throw-away one (``services.bench.throwaway``). Nothing here
imports the tests.
"""
