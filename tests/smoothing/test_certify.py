"""CERTIFY with separate selection and estimation draws, and adaptive certification, on scripted
generators: which draws count, the radius against scipy, abstention, the stop reasons, seeds."""

from dataclasses import replace

import pytest
from pydantic import TypeAdapter
from scipy.stats import beta, norm

from shared.smoothing import SmoothConfig, SmoothGuard, SmoothResult
from shared.smoothing.certify import certify_stop, max_radius
from shared.smoothing.noise import candidate_seed, plan_round
from shared.smoothing.smoother import EmbeddingCache, aggregate, next_step
from shared.smoothing.types import Sample
from tests.scripted import BagOfWordsEmbedder, ScriptedGenerator

YES_NO = ("yes", "no")


def certify_config(**fields) -> SmoothConfig:
    base = {"answer_set": YES_NO, "certify": True, "certify_n0": 5, "num_samples": 20, "sigma": 0.25}
    return SmoothConfig(**(base | fields))


def run(script, config):
    gen = ScriptedGenerator(script)
    return gen, SmoothGuard(gen, BagOfWordsEmbedder(), config).run(None, "Is there a cat?")


def by_phase(clean: str, selection: str, estimation: str, n0: int = 5):
    """Answers by who asks: the clean candidate (index 0), the selection draws (1..n0), the rest."""
    return lambda s: clean if s.is_clean else (selection if s.index <= n0 else estimation)


# --- the draws ---------------------------------------------------------------------------------


def test_selection_is_round_zero_and_estimation_follows_with_other_indices_and_seeds():
    config = certify_config(certify_n0=4, num_samples=6, seed=3)
    r0, r1, r2 = (plan_round(config, r) for r in range(3))
    assert [s.index for s in r0] == [0, 1, 2, 3, 4] and r0[0].is_clean and r0[0].seed is None
    assert [s.index for s in r1] == [5, 6, 7, 8, 9, 10] and {s.round for s in r1} == {1}
    assert r2 == []
    seeds = [s.seed for s in r0[1:] + r1]
    assert len(set(seeds)) == len(seeds) == 10
    assert seeds == [candidate_seed(3, i) for i in range(1, 11)]


def test_adaptive_estimation_comes_in_rounds_after_the_selection_round():
    config = certify_config(certify_n0=3, num_samples=10, adaptive=True, round_size=4, include_clean=False)
    plans = [[s.index for s in plan_round(config, r)] for r in range(5)]
    assert plans == [[0, 1, 2], [3, 4, 5, 6], [7, 8, 9, 10], [11, 12], []]


def test_plans_without_certify_are_unchanged():
    fixed, adaptive = SmoothConfig(), SmoothConfig(adaptive=True, num_samples=20, round_size=8)
    assert [s.index for s in plan_round(fixed, 0)] == list(range(11)) and plan_round(fixed, 1) == []
    assert [[s.index for s in plan_round(adaptive, r)] for r in range(4)] == [
        list(range(9)),
        list(range(9, 17)),
        list(range(17, 21)),
        [],
    ]


def test_selection_draws_are_never_counted_in_the_estimate():
    gen, result = run(by_phase("yes", "no", "Yes."), certify_config())
    cert = result.consensus.certificate
    assert [len(c) for c in gen.calls] == [6, 20]
    assert (cert.label, cert.selection_count, cert.count, cert.drawn) == ("no", 5, 0, 20)
    assert cert.abstained and cert.radius is None and result.abstained
    assert result.consensus.count == 0 and result.consensus.total == 20


def test_the_clean_candidate_counts_in_neither_set():
    # selection 3 "no" vs 2 "yes": counting the clean "yes" would tie and pick "yes" (the set's order)
    def script(s):
        if s.is_clean:
            return "yes"
        return "no" if s.index in (1, 2, 3) else ("yes" if s.index <= 5 else "no")

    _, result = run(script, certify_config())
    cert = result.consensus.certificate
    assert (cert.label, cert.selection_count, cert.count, cert.drawn) == ("no", 3, 20, 20)
    assert result.answer_label == "no" and result.answer == "no"
    assert sum(s.selected for s in result.samples) == 1


def test_the_answer_is_the_selected_class_even_where_all_draws_together_lean_the_other_way():
    # selection: 3 "no", 2 "yes"; estimation: 9 "no", 11 "yes"; with the clean "yes": 12 "no", 14 "yes"
    def script(s):
        if s.is_clean:
            return "yes"
        if s.index <= 5:
            return "no" if s.index <= 3 else "yes"
        return "no" if s.index <= 14 else "yes"

    _, result = run(script, certify_config())
    cert = result.consensus.certificate
    assert (cert.label, cert.count, cert.drawn) == ("no", 9, 20) and cert.abstained and result.abstained
    assert result.answer_label == "no" and sum(c.size for c in result.clusters if c.label == "yes") == 14
    chosen = [s for s in result.samples if s.selected]
    assert len(chosen) == 1 and chosen[0].answer_label == "no" and chosen[0].index == result.selected_index


def test_no_selection_draw_naming_an_answer_stops_futile_before_estimating():
    gen, result = run(by_phase("yes", "a cat on a mat", "yes"), certify_config())
    assert [len(c) for c in gen.calls] == [6]
    assert result.stop_reason == "futile" and result.abstained
    assert result.consensus.certificate.label is None and result.consensus.certificate.drawn == 0


# --- the numbers -------------------------------------------------------------------------------


def test_radius_is_sigma_times_inverse_normal_of_the_clopper_pearson_bound():
    # 95 of 100 estimation draws, α = 0.001, σ = 0.25
    script = by_phase("no", "yes", "yes")
    config = certify_config(num_samples=100, alpha=0.001)
    _, result = run(lambda s: "no" if s.index in range(6, 11) else script(s), config)
    cert = result.consensus.certificate
    p_lower = beta.ppf(0.001, 95, 6)
    assert (cert.count, cert.drawn, cert.alpha) == (95, 100, 0.001)
    assert cert.p_lower == pytest.approx(p_lower) and p_lower == pytest.approx(0.844633, abs=1e-6)
    assert cert.radius == pytest.approx(0.25 * norm.ppf(p_lower)) == pytest.approx(0.253420, abs=1e-6)
    assert result.consensus.certified_radius == cert.radius and result.consensus.lower_bound == cert.p_lower
    assert cert.radius_space == result.consensus.radius_space == "normalized" and not result.abstained
    assert (cert.n0, cert.n, cert.sigma) == (5, 100, 0.25)


def test_max_radius_is_what_a_unanimous_estimate_certifies():
    _, result = run(by_phase("no", "yes", "yes"), certify_config(num_samples=100, alpha=0.001, noise_space="pixel"))
    cert = result.consensus.certificate
    expected = 0.25 * norm.ppf(0.001 ** (1 / 100))
    assert cert.max_radius == pytest.approx(expected) == pytest.approx(0.375119, abs=1e-6)
    assert cert.radius == pytest.approx(cert.max_radius) and cert.radius_space == "pixel"
    assert max_radius(0.25, 4, 0.05) is None  # 0.05 ** (1/4) = 0.47: four draws never clear ½


def test_a_budget_too_small_for_alpha_stops_futile_without_estimating():
    gen, result = run(by_phase("yes", "yes", "yes"), certify_config(num_samples=4))
    assert [len(c) for c in gen.calls] == [6]
    assert result.stop_reason == "futile" and result.consensus.certificate.max_radius is None


def test_abstains_when_the_bound_does_not_clear_one_half():
    _, result = run(lambda s: "yes" if s.is_clean or s.index % 5 > 1 else "no", certify_config(num_samples=30))
    cert = result.consensus.certificate
    assert cert.label == "yes" and cert.p_lower == pytest.approx(beta.ppf(0.05, cert.count, 30 - cert.count + 1))
    assert cert.p_lower <= 0.5 and cert.abstained and cert.radius is None and result.abstained
    assert result.stop_reason == "fixed" and result.answer_label == "yes"


def test_without_certify_nothing_changes():
    gen, result = run(by_phase("yes", "yes", "yes"), replace(certify_config(), certify=False))
    assert [len(c) for c in gen.calls] == [21]  # certify_n0 plays no part
    assert result.consensus.certificate is None and result.consensus.total == 20
    assert result.consensus.certified_radius is not None  # the closed-answer mode's same-draw radius, as before


# --- adaptive certification --------------------------------------------------------------------


def adaptive(**fields) -> SmoothConfig:
    return certify_config(**({"adaptive": True, "num_samples": 40, "round_size": 10} | fields))


def radius_of(k: int, n: int, config: SmoothConfig) -> float:
    return config.sigma * norm.ppf(beta.ppf(config.look_alpha(0), k, n - k + 1))


def test_adaptive_stops_decided_once_the_target_is_certified():
    config = adaptive(target_radius=0.05)
    gen, result = run(by_phase("no", "yes", "yes"), config)
    assert result.stop_reason == "decided" and [len(c) for c in gen.calls] == [6, 10]
    cert = result.consensus.certificate
    assert cert.alpha == pytest.approx(0.05 / 4) and cert.radius == pytest.approx(radius_of(10, 10, config))
    assert cert.radius >= 0.05 and cert.target_radius == 0.05 and not result.abstained


def test_adaptive_without_a_target_stops_at_the_first_certified_radius():
    gen, result = run(by_phase("no", "yes", "yes"), adaptive())
    assert result.stop_reason == "decided" and len(gen.calls) == 2 and result.consensus.certified_radius > 0


def test_adaptive_stops_futile_once_the_budget_cannot_reach_the_target():
    config = adaptive()
    target = (radius_of(39, 40, config) + radius_of(40, 40, config)) / 2  # only a unanimous 40/40 reaches it
    one_miss_first = lambda s: "no" if s.index == 6 else by_phase("no", "yes", "yes")(s)  # noqa: E731
    gen, result = run(one_miss_first, replace(config, target_radius=target))
    assert result.stop_reason == "futile" and [len(c) for c in gen.calls] == [6, 10]
    assert result.consensus.certificate.count == 9 and result.consensus.certificate.drawn == 10


def test_a_target_beyond_the_max_radius_is_futile_before_estimating():
    config = adaptive()
    gen, result = run(by_phase("no", "yes", "yes"), replace(config, target_radius=radius_of(40, 40, config) * 1.01))
    assert result.stop_reason == "futile" and len(gen.calls) == 1


def test_adaptive_spends_the_budget_when_the_last_draws_miss_the_target():
    config = adaptive()
    target = (radius_of(39, 40, config) + radius_of(40, 40, config)) / 2
    one_miss_last = lambda s: "no" if s.index == 45 else by_phase("no", "yes", "yes")(s)  # noqa: E731
    gen, result = run(one_miss_last, replace(config, target_radius=target))
    assert result.stop_reason == "budget" and [len(c) for c in gen.calls] == [6, 10, 10, 10, 10]
    cert = result.consensus.certificate
    assert (cert.count, cert.drawn) == (39, 40) and cert.radius == pytest.approx(radius_of(39, 40, config))
    assert cert.radius < target and not cert.abstained  # a radius, just not the target


def test_stop_rule_directly():
    config = adaptive(target_radius=0.1, num_samples=400)  # 40 looks at α/40
    _, result = run(by_phase("no", "yes", "yes"), replace(config, num_samples=40))
    cert = replace(result.consensus.certificate, n=400, alpha=config.look_alpha(0))

    def at(k, n):
        return replace(cert, count=k, drawn=n, p_lower=beta.ppf(cert.alpha, k, n - k + 1) if k else 0.0)

    assert certify_stop(at(0, 0), config) is None
    assert certify_stop(at(40, 40), config) == "decided"  # p_lower 0.846: radius 0.25·Φ⁻¹(0.846) = 0.255 ≥ 0.1
    assert certify_stop(at(5, 10), config) is None  # undecided, the upper bound still allows it
    assert certify_stop(at(0, 10), config) == "futile"  # reachable in principle, but the upper bound is < ½
    assert certify_stop(at(390, 400), config) == "decided"
    assert certify_stop(at(200, 400), config) == "budget"
    assert certify_stop(replace(at(0, 0), label=None), config) == "futile"


# --- determinism: the CLI's loop and the job's steps -------------------------------------------


def seeded(s):
    """An answer that depends on the candidate's noise seed alone (≈ 80% "yes")."""
    return "yes" if s.is_clean or s.seed % 5 else "no"


def job_path(config):
    """The service's way: each round generated on its own, every vote from fresh rows and a fresh
    embedding cache (``shared.jobs.steps``), until ``next_step`` says stop."""
    gen, rows, round_index = ScriptedGenerator(seeded), [], 0
    while True:
        specs = plan_round(config, round_index)
        rows += [
            Sample.from_generation(s, g)
            for s, g in zip(specs, gen.generate(None, "p", specs, max_new_tokens=8), strict=True)
        ]
        round_index += 1
        fresh = [replace(r, cluster=None, cosine_to_centroid=None, selected=False, answer_label=None) for r in rows]
        result = aggregate(
            fresh, EmbeddingCache(BagOfWordsEmbedder()), config, rounds=round_index, stop="fixed", generator="g"
        )
        if (reason := next_step(result, config)) is not None:
            result.stop_reason = reason
            return result


@pytest.mark.parametrize("fields", [{}, {"adaptive": True, "round_size": 8, "num_samples": 64}])
def test_the_job_path_and_the_command_line_agree_for_a_seed(fields):
    config = certify_config(seed=11, **fields)
    _, cli = run(seeded, config)
    job = job_path(config)
    assert job.consensus == cli.consensus and job.stop_reason == cli.stop_reason
    assert (job.answer, job.selected_index, job.rounds) == (cli.answer, cli.selected_index, cli.rounds)
    _, again = run(seeded, config)
    assert again.consensus == cli.consensus
    _, other = run(seeded, replace(config, seed=12))
    assert [s.seed for s in other.samples] != [s.seed for s in cli.samples]


def test_the_certificate_survives_the_stored_result():
    _, result = run(seeded, certify_config())
    adapter = TypeAdapter(SmoothResult)  # how a job's result is stored (``shared.jobs.store``)
    back = adapter.validate_python(adapter.dump_python(result, mode="json"))
    assert back.consensus == result.consensus and back.consensus.certificate is not None


# --- the config ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"certify": True}, "closed answer set"),
        ({"certify": True, "answer_set": YES_NO, "sigma": 0.0}, "sigma > 0"),
        ({"certify": True, "answer_set": YES_NO, "certify_n0": 0}, "certify_n0"),
        ({"certify": True, "answer_set": YES_NO, "target_radius": 0.1}, "adaptive"),
        ({"adaptive": True, "target_radius": 0.1}, "certify"),
        ({"certify": True, "adaptive": True, "answer_set": YES_NO, "target_radius": 0.0}, "target_radius"),
    ],
)
def test_config_refuses_what_cannot_certify(fields, message):
    with pytest.raises(ValueError, match=message):
        SmoothConfig(**fields)
