"""The certification options come from the one definition (``shared.jobs.options``): the API's
JobOptions, the command line's flags, and the audit spec (per-item answer sets:
tests/audits/test_answer_sets.py)."""

import pytest
from pydantic import ValidationError

from api.schemas import JobOptions
from shared.audits.spec import DefenseSpec
from shared.jobs.options import from_params, to_params
from shared.smoothing.types import SmoothConfig
from shared.tools.cli import build_parser, config_from_args, format_certificate


def test_defaults_do_not_certify():
    config = JobOptions(prompt="p").config("normalized")
    assert (config.certify, config.certify_n0, config.target_radius) == (False, 16, None)


def test_command_line_flags_carry_the_certification_options():
    argv = ["defend", "in.png", "--prompt", "p", "--answers", "yes-no", "--certify", "--certify-n0", "8"]
    argv += ["--adaptive", "--target-radius", "0.2", "-n", "100"]
    config = config_from_args(build_parser().parse_args(argv), "image")
    assert (config.certify, config.certify_n0, config.target_radius, config.num_samples) == (True, 8, 0.2, 100)
    assert from_params(to_params(config)) == config


def test_certify_without_an_answer_set_is_refused():
    with pytest.raises(ValueError, match="closed answer set"):
        JobOptions(prompt="p", certify=True).config("normalized")
    with pytest.raises(ValueError, match="closed answer set"):
        config_from_args(build_parser().parse_args(["defend", "x.png", "--prompt", "p", "--certify"]), "image")
    with pytest.raises(ValidationError, match="sigma > 0"):
        DefenseSpec(certify=True, sigmas=[0.0, 0.1])  # an audit certifies, but not without noise
    with pytest.raises(ValidationError, match="certify_n0"):
        JobOptions(prompt="p", certify_n0=0)


def test_the_text_output_names_the_certificate():
    from shared.smoothing import SmoothGuard
    from tests.scripted import BagOfWordsEmbedder, ScriptedGenerator

    config = SmoothConfig(answer_set=("yes", "no"), certify=True, certify_n0=4, num_samples=50, sigma=0.5)
    result = SmoothGuard(ScriptedGenerator(lambda s: "yes"), BagOfWordsEmbedder(), config).run(None, "p")
    line = format_certificate(result.consensus.certificate)
    assert line.startswith("certificate: yes chosen by 4/4 selection draws; 50/50 of 50 estimation draws")
