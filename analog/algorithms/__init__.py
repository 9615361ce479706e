"""Training algorithms for analog tiles, by name (``ALGORITHMS``) for TOML configs.

AnalogSGD lives in sgd.py (core); TikiTaka, TTv2, RLv2, AGAD in tiki_taka.py; MixedPrecision in mixed_precision.py.
"""
from analog.algorithms.base import (ALGORITHMS, Algorithm, AlgorithmState, algorithm_from_dict,
                                    register_algorithm)
from analog.algorithms.sgd import AnalogSGD, AnalogSGDState
from analog.algorithms.tiki_taka import AGAD, AGADState, RLv2, TTv2, TikiTaka, TikiTakaState, BufferedTransferState
from analog.algorithms.mixed_precision import MixedPrecision, MixedPrecisionState

__all__ = ["AGAD", "AGADState", "ALGORITHMS", "Algorithm", "AlgorithmState", "AnalogSGD", "AnalogSGDState",
           "BufferedTransferState", "MixedPrecision", "MixedPrecisionState", "RLv2", "TTv2", "TikiTaka", "TikiTakaState",
           "algorithm_from_dict", "register_algorithm"]
