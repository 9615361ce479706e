"""Studies made of many fleet runs: the compression sweep, the alignment comparison, the accuracy vs
privacy front, and the fleet's model as a model of the simulator's robustness study.
"""
from fleet.experiments.alignment import compare_alignment
from fleet.experiments.privacy_front import Defense, load_marks, plan, run_front
from fleet.experiments.study_models import fleet_model_spec
from fleet.experiments.sweep import SweepSpec, run_sweep

__all__ = ["Defense", "SweepSpec", "compare_alignment", "fleet_model_spec", "load_marks", "plan", "run_front",
           "run_sweep"]
