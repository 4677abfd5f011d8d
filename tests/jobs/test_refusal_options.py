"""The refusal options come from the one definition in ``shared.jobs.options``: the API's
JobOptions, the audit's DefenseSpec and the command line's flags all carry them."""

import pytest
from pydantic import ValidationError

from api.schemas import JobOptions
from shared.audits.spec import DefenseSpec
from shared.jobs.options import from_params, to_params
from shared.smoothing.types import SmoothConfig
from shared.tools.cli import build_parser, config_from_args


def test_refusal_threshold_defaults_off_everywhere():
    assert SmoothConfig().refusal_threshold is None and not SmoothConfig().refusal_aware
    assert JobOptions(prompt="p").config("normalized").refusal_threshold is None
    assert DefenseSpec().config(0.1).refusal_threshold is None


def test_refusal_threshold_reaches_the_core_from_every_entry_point():
    assert JobOptions(prompt="p", refusal_threshold=0.25).config("normalized").refusal_threshold == 0.25
    assert DefenseSpec(refusal_threshold=0.25, prefer_refusal=True).config(0.1).refusal_aware
    argv = ["defend", "in.png", "--prompt", "p", "--refusal-threshold", "0.25", "--prefer-refusal"]
    config = config_from_args(build_parser().parse_args(argv), "image")
    assert config.refusal_threshold == 0.25 and config.prefer_refusal
    submit = build_parser().parse_args(["audit", "submit", "--refusal-threshold", "0.3"])
    assert submit.refusal_threshold == 0.3
    assert from_params(to_params(config)) == config


@pytest.mark.parametrize("tau", [0.0, 1.0, -0.2])
def test_refusal_threshold_out_of_range_is_refused(tau):
    with pytest.raises(ValidationError, match="refusal_threshold"):
        JobOptions(prompt="p", refusal_threshold=tau)
    with pytest.raises(ValidationError, match="refusal_threshold"):
        DefenseSpec(refusal_threshold=tau)
