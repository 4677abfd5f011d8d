"""The robustify request without the stack: defaults, bounds, one definition shared with the
command line and the library, and the pipeline's message."""

import argparse
import uuid

import pytest
from pydantic import ValidationError

from shared import pipeline
from shared.models import RobustModel
from shared.robust_models.spec import RobustifyOptions, RobustifySpec
from shared.smoothing.types import DISTILLABLE_MODEL_TYPES
from shared.tools import robustify_cli


def test_defaults_and_the_library_config_they_make():
    spec = RobustifySpec.model_validate({})
    assert (spec.noise_space, spec.minutes, spec.steps, spec.batch, spec.seed) == ("pixel", 10.0, None, 64, 0)
    assert spec.dataset.format == "shapes" and spec.dataset.count == 500 and spec.validation_sigmas == [0.25, 0.5]
    config = spec.distil_config()
    assert config.schedule.sigma_max == 0.55 and config.minutes == 10.0 and config.steps is None
    assert RobustifySpec.model_validate({"sigma_max": 0.3, "steps": 7}).distil_config().schedule.sigma_max == 0.3


@pytest.mark.parametrize(
    "bad",
    [{"sigma_max": 0}, {"batch": 0}, {"minutes": 0}, {"noise_space": "waveform"}, {"validation_sigmas": []}],
)
def test_out_of_bounds_options_are_refused(bad):
    with pytest.raises(ValidationError):
        RobustifySpec.model_validate(bad)


def test_the_command_line_takes_its_defaults_from_the_options():
    parser = argparse.ArgumentParser()
    robustify_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["robustify", "m", "--out", "o", "--shapes", "3"])
    defaults = RobustifyOptions.model_validate({})
    assert (args.noise_space, args.minutes, args.lr, args.batch, args.seed) == (
        defaults.noise_space,
        defaults.minutes,
        defaults.lr,
        defaults.batch,
        defaults.seed,
    )


def test_the_layouts_robustify_trains_are_the_ones_submit_accepts():
    from shared.robustify import SUPPORTED_LAYOUTS

    assert tuple(SUPPORTED_LAYOUTS) == DISTILLABLE_MODEL_TYPES


def test_a_run_is_one_message_on_the_gpu_queue():
    row = RobustModel(id=uuid.uuid4())
    (message,) = pipeline.after_robustify_submit(row)
    assert message.step == pipeline.Step.ROBUSTIFY and message.step.queue == "gpu" and message.args == (str(row.id),)
    assert pipeline.resume_robust_model(row) == [message]
