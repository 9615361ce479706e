"""Flower's engines carrying a fleet run: the ServerApp/ClientApp pair (apps, client_app), Flower's own
runtime driven through its command-line tools (runtime), the simulation engine (simulation) and the
deployment engine with TLS and node authentication (deployment).
"""
from fleet.flower.deployment import Pki, deploy_local, make_pki, serve_fleet
from fleet.flower.simulation import run_fleet

__all__ = ["Pki", "deploy_local", "make_pki", "run_fleet", "serve_fleet"]
