"""What every package above the simulator shares: the config error and its range checks.

`analog/` keeps its own checks: it imports nothing else of the project (it is usable alone).
"""
