"""Backends: the stores that implement the tiers' primitives, and how they are built.

* :mod:`.memory`: the in-memory fakes (config type ``local``), a product feature for tests.
* :mod:`.sql`: stores that run a dialect's SQL through an executor, for every SQL engine.
* :mod:`.registry`: which store, dialect and driver serve which tier as configured.
"""
