"""The one definition of the defense options and what derives from it: the API's JobOptions,
the audit's DefenseSpec, the command line's flags and the JSON in ``jobs.params``."""

import json
from dataclasses import asdict, replace

import pytest
from pydantic import ValidationError

from api.schemas import JobOptions
from shared.audits.spec import AUDIT_MAX_NEW_TOKENS, AuditSpec, DefenseSpec
from shared.jobs.options import MAX_ANSWER_CHARS, MAX_ANSWERS, SingleDefenseOptions, from_params, to_params
from shared.smoothing.types import SmoothConfig, noise_space_for
from shared.tools.audit_cli import spec_from_args
from shared.tools.cli import build_parser, config_from_args


def test_defaults_are_the_cores():
    assert SingleDefenseOptions().config("normalized") == SmoothConfig()
    assert JobOptions(prompt="p").config("normalized") == SmoothConfig()
    assert DefenseSpec().config(0.1) == replace(SmoothConfig(), max_new_tokens=AUDIT_MAX_NEW_TOKENS)


def test_command_line_defaults_are_the_options_defaults():
    defend = build_parser().parse_args(["defend", "in.png", "--prompt", "p"])
    assert config_from_args(defend, "image") == SmoothConfig()
    assert config_from_args(defend, "audio") == replace(SmoothConfig(), noise_space="waveform")
    submit = build_parser().parse_args(["audit", "submit"])
    defense = AuditSpec.model_validate(spec_from_args(submit, None)).defense
    assert defense.model_dump(exclude={"sigmas"}) == DefenseSpec(noise_space="normalized").model_dump(
        exclude={"sigmas"}
    )


def test_command_line_flags_carry_the_options():
    argv = ["defend", "in.png", "--prompt", "p", "--sigma", "0.3", "-n", "4", "--no-clean", "--adaptive"]
    argv += ["--answers", "yes-no", "--clustering", "agglomerative", "--noise-space", "pixel", "--prefer-refusal"]
    config = config_from_args(build_parser().parse_args(argv), "image")
    assert (config.sigma, config.num_samples, config.include_clean, config.adaptive) == (0.3, 4, False, True)
    assert config.answer_set == ("yes", "no") and config.clustering == "agglomerative"
    assert config.noise_space == "pixel" and config.prefer_refusal
    waveform = build_parser().parse_args(["audit", "submit", "--noise-space", "waveform"])
    with pytest.raises(ValidationError, match="does not apply to image"):  # the shapes set is images
        AuditSpec.model_validate(spec_from_args(waveform, None))


@pytest.mark.parametrize("sigma", [0.0, 0.1, 10.0])
def test_one_sigma_rule_for_jobs_and_audits(sigma):
    assert SingleDefenseOptions(sigma=sigma).sigma == sigma
    assert DefenseSpec(sigmas=[sigma]).sigmas == [sigma]


@pytest.mark.parametrize("sigma", [-0.1, 10.5])
def test_sigma_out_of_range_is_refused_everywhere(sigma):
    with pytest.raises(ValidationError, match="sigma"):
        JobOptions(prompt="p", sigma=sigma)
    with pytest.raises(ValidationError, match="sigmas"):
        DefenseSpec(sigmas=[0.1, sigma])
    with pytest.raises(ValueError, match="sigma"):
        config_from_args(
            build_parser().parse_args(["defend", "x.png", "--prompt", "p", "--sigma", str(sigma)]), "image"
        )


def test_params_round_trip_and_keep_the_stored_json():
    config = SmoothConfig(sigma=0.2, answer_set=("yes", "no"), adaptive=True, seed=2**63 - 1)
    params = to_params(config)
    assert from_params(params) == config and from_params(json.loads(json.dumps(params))) == config
    # the JSON (and so every Idempotency-Key's request hash) is what earlier versions stored
    assert json.dumps(params, sort_keys=True) == json.dumps(asdict(config), sort_keys=True)
    with pytest.raises(ValueError, match="sigma"):
        from_params(params | {"sigma": -1})


def test_noise_space_by_modality():
    assert noise_space_for("image", None) == "normalized" and noise_space_for("audio", None) == "waveform"
    assert noise_space_for("image", "pixel") == "pixel"
    with pytest.raises(ValueError, match="does not apply to audio"):
        noise_space_for("audio", "pixel")


def test_the_closed_answer_set_is_bounded_in_count_and_length():
    """10,000 answers in an 89 KB body held the CPU worker for 595 s: the set is bounded at intake."""
    assert SingleDefenseOptions(answers=[f"a{i}" for i in range(MAX_ANSWERS)]).answers is not None
    for answers in ([f"a{i}" for i in range(10_000)], ["x" * (MAX_ANSWER_CHARS + 1), "no"], ["", "no"]):
        with pytest.raises(ValidationError):
            SingleDefenseOptions(answers=answers)
