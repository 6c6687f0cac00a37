"""The jobs behind the three DAGs: small functions, one per task, with explicit inputs.

Each takes what it needs (params, the run folder, a hook, today) and returns a small JSON-safe
summary for XCom; data sets travel as files in the run folder, never through XCom.
"""
