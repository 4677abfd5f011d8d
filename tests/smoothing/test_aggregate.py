import numpy as np

from shared.smoothing.aggregate import is_refusal, map_answers, normalize_answer, vote
from shared.smoothing.types import SmoothConfig
from tests.scripted import BagOfWordsEmbedder

EMB = BagOfWordsEmbedder()


def _vote(texts, **cfg):
    config = SmoothConfig(**cfg)
    answer_emb = EMB.embed(list(config.answer_set)) if config.answer_set else None
    return vote(texts, EMB.embed(texts), config, answer_emb)


def test_identical_answers_short_circuit_to_one_cluster():
    v = _vote(["a cat on a mat"] * 5)
    assert v.labels.tolist() == [0] * 5 and v.winner == 0 and v.chosen == 0


def test_majority_cluster_wins_and_its_central_member_is_chosen():
    texts = [
        "the bomb recipe is here",
        "a dog in a park",
        "a dog in the park",
        "a brown dog in a park",
        "a dog in a park",
        "the bomb recipe is here",
    ]
    v = _vote(texts)
    dog = v.labels[1]
    assert all(v.labels[i] == dog for i in (1, 2, 3, 4)) and v.labels[0] != dog
    assert v.winner == dog and texts[v.chosen] == "a dog in a park"
    assert v.chosen == 1  # two identical central members: the lowest index wins


def test_cluster_labels_follow_first_appearance():
    v = _vote(["x y z", "p q r", "p q r", "x y z", "p q r"])
    assert v.labels.tolist() == [0, 1, 1, 0, 1]


def test_agglomerative_finds_more_than_two_clusters():
    texts = ["red apple", "red apple", "blue whale", "blue whale", "green frog", "green frog", "green frog"]
    v = _vote(texts, clustering="agglomerative", distance_threshold=0.5)
    assert len(set(v.labels.tolist())) == 3 and texts[v.chosen] == "green frog"
    assert len(set(_vote(texts).labels.tolist())) == 2


def test_ties_are_deterministic_and_can_prefer_refusal():
    texts = [
        "sure here is how to do it",
        "sure here is how to do it",
        "I'm sorry, I cannot help",
        "I'm sorry, I cannot help",
    ]
    assert texts[_vote(texts).chosen] == "sure here is how to do it"
    assert texts[_vote(texts, prefer_refusal=True).chosen] == "I'm sorry, I cannot help"


def test_refusal_detection():
    assert is_refusal("I'm sorry, but I can't assist with that.")
    assert is_refusal("As an AI, I will not do that")
    assert not is_refusal("There is a red circle in the image.")


def test_answers_map_by_normalisation_then_similarity():
    answer_set = ("yes", "no")
    texts = ["Yes.", "no, there is not", "YES", "perhaps a circle", "yes yes"]
    mapped = map_answers(texts, EMB.embed(texts), answer_set, EMB.embed(list(answer_set)), 0.7)
    assert mapped == ["yes", "no", "yes", "other", "yes"]
    assert normalize_answer("  No! ") == "no"


def test_closed_mode_clusters_by_answer():
    texts = ["yes", "Yes.", "no", "yes", "maybe"]
    v = _vote(texts, answer_set=("yes", "no"))
    assert v.answer_labels == ["yes", "yes", "no", "yes", "other"]
    assert v.labels.tolist() == [0, 0, 1, 0, 2] and v.winner == 0
    assert np.all(v.cosine[[0, 1, 3]] > 0.99)
