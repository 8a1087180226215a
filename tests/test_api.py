"""The public Python API mirrors the CLI (DESIGN §10)."""

import pytest

import medapt


def test_public_names_resolve():
    from medapt.suite import load_experiment, run_experiment

    assert medapt.load_experiment is load_experiment and medapt.run is run_experiment
    assert medapt.strategies.get("DA_L1SB").family == "partial DAPT"
    assert callable(medapt.models.build) and callable(medapt.build_report)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        medapt.nope  # noqa: B018
