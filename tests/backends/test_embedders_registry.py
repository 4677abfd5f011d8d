import numpy as np
import pytest

from shared.backends import registry
from shared.backends.embedders import MeanPoolEmbedder
from shared.config import Settings


def cosine(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_bundled_minilm_loads_offline_and_embeds_meaningfully():
    emb = registry.load_embedder("sentence-transformers:all-MiniLM-L6-v2")
    assert emb.name == "sentence-transformers:all-MiniLM-L6-v2"
    v = emb.embed(["There is a red circle.", "A red circle is in the image.", "I cannot help with that."])
    assert v.shape == (3, 384)
    assert cosine(v[0], v[1]) > cosine(v[0], v[2]) + 0.3
    assert registry.load_embedder("all-MiniLM-L6-v2") is registry.load_embedder(
        "sentence-transformers:all-MiniLM-L6-v2"
    )


def test_mean_pool_embedder_ignores_padding(tmp_path):
    from transformers import BertConfig, BertModel

    from tests.checkpoints import qwen_tokenizer

    tok = qwen_tokenizer()
    BertModel(
        BertConfig(
            vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
        )
    ).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    emb = MeanPoolEmbedder(str(tmp_path), device="cpu")
    alone = emb.embed(["a red circle"])
    padded = emb.embed(["a red circle", "is there a blue square in the image ? yes there is"])
    np.testing.assert_allclose(alone[0], padded[0], atol=1e-5)
    assert emb.name.startswith("hf-mean:")


def test_generators_load_once_per_process(llava_path):
    settings = Settings(device="cpu", dtype="float32")
    a = registry.load_generator(llava_path, settings=settings)
    assert registry.load_generator(llava_path, settings=settings) is a
    assert a.modality == "image" and registry.detect_backend(llava_path) == "hf"


def test_unknown_backends_are_named():
    with pytest.raises(ValueError, match="known"):
        registry.load_generator("x", backend="nope")
    with pytest.raises(ValueError, match="known"):
        registry.load_embedder("nope:thing")
