"""The feedback service: estimate any threshold set on the audit sample, certify a bound on its
miss rate, pick the cheapest certified set, and roll it out (or back).

Pure core: :mod:`feedback.sample`, :mod:`feedback.bound`, :mod:`feedback.costs`,
:mod:`feedback.estimate`, :mod:`feedback.optimise`, :mod:`feedback.signals`. Thin edges:
:mod:`feedback.store` (database), the jobs :mod:`feedback.retune`, :mod:`feedback.error_alerts`
and :mod:`feedback.score_alerts`, and :mod:`feedback.tasks` (Celery). The cascade benchmark's
core lives with the other benchmarks (``services.bench.policies``).
"""
