"""The feedback service: estimate any threshold set on the audit sample, certify a bound on its
miss rate, pick the cheapest certified set, and roll it out (or back).

Pure core: :mod:`feedback.sample`, :mod:`feedback.bound`, :mod:`feedback.costs`,
:mod:`feedback.estimate`, :mod:`feedback.optimise`, :mod:`feedback.signals`,
:mod:`feedback.benchmark`. Thin edges: :mod:`feedback.store` (database),
:mod:`feedback.retune` (the job), :mod:`feedback.tasks` (Celery).
"""
