"""Packaging metadata: pyproject.toml is read by setuptools without deprecation warnings."""
import warnings
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_pyproject_applies_without_setuptools_deprecation_warnings():
    # A license table ({text = ...}) is deprecated in favour of an SPDX expression string; the
    # warning is printed on every install, so any deprecation here is a failure.
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dist = apply_configuration(Distribution(), str(PYPROJECT))
    assert dist.metadata.license_expression == "Apache-2.0"
