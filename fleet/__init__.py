"""Fleets of edge devices on Flower, and the studies made of them.

One package per job, in one-way layers (pyproject.toml's import-linter contracts):
``cli`` (the `analog-edge` command) -> ``experiments`` (sweeps, alignment comparison, privacy front)
-> ``flower`` (Flower's simulation and deployment engines) -> ``run`` (one run's phases, transport,
service and report) -> ``privacy``, ``inference``, ``energy`` (what a run measures) -> ``config``,
``errors``, ``names``, ``tables``, ``processes`` (the vocabulary every layer shares).
"""
