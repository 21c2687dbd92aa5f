"""The feedback service: estimate any threshold set on the audit sample, certify bounds on its
miss rate (and optionally its false-block rate), pick the cheapest certified set, roll it out
(or back), and watch that the certificate keeps holding.

Pure core: :mod:`feedback.sample`, :mod:`feedback.bound`, :mod:`feedback.costs`,
:mod:`feedback.estimate`, :mod:`feedback.tables` (every candidate at once),
:mod:`feedback.ltt` (the multiple testing and its proof), :mod:`feedback.risk`,
:mod:`feedback.optimise` (with its optional tie-break, :mod:`feedback.tiebreak`),
:mod:`feedback.drift` (the drift guard's tests),
:mod:`feedback.signals`, and the exact synthetic world the benchmarks and tests measure against
(:mod:`feedback.simulate`, :mod:`feedback.oracle`). Thin edges: :mod:`feedback.store`
(database), the jobs :mod:`feedback.retune`, :mod:`feedback.drift_guard`,
:mod:`feedback.error_alerts` and :mod:`feedback.score_alerts`, :mod:`feedback.quality_view`
(the dashboard's panel) and :mod:`feedback.tasks` (Celery). Benchmark cores live with the other
benchmarks (``services.bench.policies``, ``services.bench.decision_quality``).
"""
