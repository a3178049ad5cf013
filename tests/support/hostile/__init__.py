"""Hostile input and its oracles, for tests/test_hostile_input.py.

payloads.py  the classic payload list, hypothesis strategies of hostile Unicode, sized names
oracles.py   the documented rules as checks, and the harness that verifies sentinels and
             row counts after each run
"""
