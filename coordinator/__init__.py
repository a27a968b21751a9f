"""agent-fleet's coordinator: one stateless, idempotent reconciliation cycle of an agent fleet.

Layout: `steps/` holds one module per step of the cycle (decisions are pure functions over plain
data); `edges/` holds the thin adapters to Docker and GitHub; `cycle.py` runs the steps and
isolates their failures; `report.py` is the report as data and its renderings.
"""
