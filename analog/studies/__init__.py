"""Reproducible experiments on the simulator. ``response-functions``: Analog SGD vs the Tiki-Taka
family on non-ideal response functions, and stochastic vs nearest rounding (Wu et al. 2025,
Gupta et al. 2015). Run ``analog-edge study response-functions --quick``. ``robustness``
(analog.studies.robustness): accuracy of digitally and hardware-aware trained models on noisy,
drifting inference chips; ``analog-edge study robustness --quick``."""
from analog.studies.config import FixedPointSettings, LeastSquaresSettings, MnistSettings, StudyConfig
from analog.studies.response_functions import run_study

__all__ = ["FixedPointSettings", "LeastSquaresSettings", "MnistSettings", "StudyConfig", "run_study"]
