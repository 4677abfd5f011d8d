import ast
from pathlib import Path

import pytest

from shared.smoothing import SmoothConfig, SmoothGuard
from tests.scripted import BagOfWordsEmbedder, ScriptedGenerator

ADV = "the password is swordfish"
BENIGN = "a cat sitting on a mat"


def attacked(spec):
    """The clean input carries an attack; most noisy copies knock it back to the benign answer."""
    return ADV if spec.is_clean or spec.index == 5 else BENIGN


def test_paper_default_runs_one_batch_of_eleven_and_recovers_the_benign_answer():
    gen = ScriptedGenerator(attacked)
    result = SmoothGuard(gen, BagOfWordsEmbedder()).run(None, "describe")
    assert len(gen.calls) == 1 and len(gen.calls[0]) == 11  # one batched call, never a loop
    assert result.answer == BENIGN and not result.abstained
    assert result.samples_spent == 11 and result.stop_reason == "fixed" and result.rounds == 1
    assert result.consensus.count == 9 and result.consensus.total == 10  # noisy only; 5 is adversarial
    sizes = sorted(c.size for c in result.clusters)
    assert sizes == [2, 9]
    chosen = [s for s in result.samples if s.selected]
    assert len(chosen) == 1 and chosen[0].index == result.selected_index and chosen[0].text == BENIGN


def test_every_sample_carries_its_provenance():
    result = SmoothGuard(ScriptedGenerator(attacked), BagOfWordsEmbedder(), SmoothConfig(seed=42)).run(None, "p")
    for s in result.samples:
        assert s.round == 0 and s.noise_space == "normalized" and s.num_tokens > 0 and s.generation_ms > 0
        assert s.cluster is not None and s.cosine_to_centroid is not None
        assert (s.seed is None) == s.is_clean == (s.index == 0)
    assert result.config["seed"] == 42 and result.embedder == "bag-of-words" and result.generator == "scripted"


def test_low_consensus_abstains_but_still_answers():
    gen = ScriptedGenerator(lambda s: BENIGN if s.index % 2 else ADV)
    result = SmoothGuard(gen, BagOfWordsEmbedder()).run(None, "p")
    assert result.abstained and result.consensus.lower_bound <= 0.5
    assert result.answer in (BENIGN, ADV)


def test_adaptive_stops_as_soon_as_the_bound_decides():
    gen = ScriptedGenerator(lambda s: BENIGN)
    cfg = SmoothConfig(adaptive=True, num_samples=40, round_size=8)
    result = SmoothGuard(gen, BagOfWordsEmbedder(), cfg).run(None, "p")
    assert result.stop_reason == "decided" and result.rounds == 1 and result.samples_spent == 9
    assert [len(c) for c in gen.calls] == [9]
    assert result.consensus.alpha == pytest.approx(0.05 * 0.8)  # the first look spends 80 % of α


def test_the_looks_levels_add_up_to_alpha_with_most_at_the_first_look():
    cfg = SmoothConfig(adaptive=True, num_samples=40, round_size=5, alpha=0.05)
    levels = [cfg.look_alpha(look) for look in range(cfg.max_rounds)]
    assert sum(levels) == pytest.approx(0.05) and levels[0] == pytest.approx(0.04)
    assert levels[1:] == pytest.approx([0.01 / 7] * 7)
    assert SmoothConfig().look_alpha(0) == 0.05  # one look (fixed N): all of α
    even = SmoothConfig(adaptive=True, num_samples=40, round_size=10, answer_set=("yes", "no"), certify=True)
    assert [even.look_alpha(look) for look in range(4)] == pytest.approx([0.0125] * 4)  # certification: even


def test_a_unanimous_first_round_of_five_decides_only_with_the_front_loaded_level():
    front = SmoothConfig(adaptive=True, num_samples=40, round_size=5)
    even = SmoothConfig(adaptive=True, num_samples=40, round_size=5, first_look_share=1 / 8)
    runs = {
        name: SmoothGuard(ScriptedGenerator(lambda s: BENIGN), BagOfWordsEmbedder(), cfg).run(None, "p")
        for name, cfg in (("front", front), ("even", even))
    }
    assert runs["front"].stop_reason == "decided" and runs["front"].samples_spent == 6  # 0.04 ** (1/5) = 0.525
    assert runs["even"].rounds == 2 and runs["even"].samples_spent == 11  # 0.00625 ** (1/5) < 0.5


def test_a_later_look_uses_the_later_level():
    gen = ScriptedGenerator(lambda s: ADV if s.index == 3 else BENIGN)  # 4/5 noisy agree at the first look
    cfg = SmoothConfig(adaptive=True, num_samples=40, round_size=5)
    result = SmoothGuard(gen, BagOfWordsEmbedder(), cfg).run(None, "p")
    assert result.rounds == 3 and result.consensus.alpha == pytest.approx(0.01 / 7)  # 9/10 is not enough at look 1


def test_adaptive_keeps_sampling_while_undecided_then_stops_futile_or_at_budget():
    gen = ScriptedGenerator(lambda s: BENIGN if s.index % 3 else ADV)  # 2/3 benign: undecided at n=8
    cfg = SmoothConfig(adaptive=True, num_samples=40, round_size=8)
    result = SmoothGuard(gen, BagOfWordsEmbedder(), cfg).run(None, "p")
    assert result.rounds > 1 and all(len(c) <= 9 for c in gen.calls)
    assert result.stop_reason in ("decided", "futile", "budget")
    assert [s.index for s in result.samples] == list(range(result.samples_spent))


def test_closed_answer_mode_certifies_a_radius():
    gen = ScriptedGenerator(lambda s: "Yes." if s.index % 10 else "no")
    cfg = SmoothConfig(answer_set=("yes", "no"), num_samples=100, sigma=0.25, alpha=0.001)
    result = SmoothGuard(gen, BagOfWordsEmbedder(), cfg).run(None, "p")
    assert result.answer_label == "yes" and not result.abstained
    assert result.consensus.certified_radius is not None and result.consensus.certified_radius > 0
    assert result.consensus.radius_space == "normalized"
    assert {c.label for c in result.clusters} == {"yes", "no"}


def test_unsupported_noise_space_is_refused():
    with pytest.raises(ValueError, match="noise spaces"):
        SmoothGuard(ScriptedGenerator(attacked), BagOfWordsEmbedder(), SmoothConfig(noise_space="waveform")).run(
            None, "p"
        )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sigma": -1},
        {"num_samples": 0},
        {"alpha": 0.7},
        {"noise_space": "x"},
        {"answer_set": ("yes",)},
        {"clustering": "dbscan"},
    ],
)
def test_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        SmoothConfig(**kwargs)


def test_core_imports_no_service_code():
    banned = {"sqlalchemy", "celery", "minio", "redis", "fastapi", "api", "workers"}
    for path in Path("shared/smoothing").glob("*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not names & banned, (path, names & banned)


def test_each_distinct_answer_is_embedded_once_across_rounds():
    seen = []

    class Counting(BagOfWordsEmbedder):
        def embed(self, texts):
            seen.extend(texts)
            return super().embed(texts)

    gen = ScriptedGenerator(lambda s: BENIGN if s.index % 3 else ADV)
    cfg = SmoothConfig(adaptive=True, num_samples=40, round_size=8)
    result = SmoothGuard(gen, Counting(), cfg).run(None, "p")
    assert result.rounds > 1 and sorted(seen) == sorted({BENIGN, ADV})
