"""Backends: one module per engine and tier, plus the SQL machinery they share.

* ``memory_*``: the in-memory fakes (config type ``local``), a product feature for tests.
* ``sql_*``: repositories that run a dialect's SQL through an executor, for any engine.
* ``mysql``: the aiomysql driver adapter.
"""
