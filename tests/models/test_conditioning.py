"""Text encoders: the learned fallback, the packaged MiniLM (when installed), the factory, null substitution."""

from __future__ import annotations

import pytest
import torch

from soundtrail.models.conditioning import (
    EMPTY,
    LearnedTextConfig,
    LearnedTextEncoder,
    build_text_encoder,
    encoder_id_for,
    hash_words,
    minilm_path,
    replace_condition,
)

CAPTIONS = ["Upbeat jazz piano, with drums!", "ambient drone", ""]


def test_word_hashing_is_stable_and_case_insensitive() -> None:
    ids = hash_words("Jazz PIANO jazz", 4096, 64)
    assert ids[0] == ids[2] and ids[0] != ids[1]
    assert ids == hash_words("jazz piano, jazz.", 4096, 64)
    assert all(2 <= i < 4098 for i in ids)
    assert hash_words("", 4096, 64) == [EMPTY] == hash_words("?!", 4096, 64)
    assert len(hash_words(" ".join(["word"] * 100), 4096, 64)) == 64


def test_learned_encoder_shapes_mask_and_padding_independence() -> None:
    torch.manual_seed(0)
    encoder = LearnedTextEncoder(LearnedTextConfig(dim=32, n_layers=1, n_heads=2)).eval()
    emb, mask = encoder(CAPTIONS)
    assert emb.shape == (3, 5, 32) and encoder.dim == 32
    assert mask.tolist() == [[True] * 5, [True, True, False, False, False], [True, False, False, False, False]]
    assert torch.isfinite(emb).all()
    alone, alone_mask = encoder(CAPTIONS[1:2])
    assert alone_mask.tolist() == [[True, True]]
    torch.testing.assert_close(alone[0], emb[1, :2], atol=1e-5, rtol=1e-5)  # batch padding changes nothing
    assert encoder.trainable and any(p.requires_grad for p in encoder.parameters())


def test_learned_encoder_id_names_its_settings() -> None:
    small = LearnedTextEncoder(LearnedTextConfig(dim=32, n_layers=1, n_heads=2))
    assert small.encoder_id == LearnedTextEncoder(LearnedTextConfig(dim=32, n_layers=1, n_heads=2)).encoder_id
    assert small.encoder_id != LearnedTextEncoder().encoder_id
    assert small.encoder_id.startswith("learned-words:")


def test_replace_condition_keeps_shapes_for_one_batch() -> None:
    cond = torch.randn(3, 4, 8)
    mask = torch.tensor([[True, True, False, False]] * 3)
    null = torch.full((8,), 9.0)
    out, out_mask = replace_condition(cond, mask, torch.tensor([False, True, False]), null)
    assert out.shape == cond.shape and out_mask.shape == mask.shape
    assert torch.equal(out[0], cond[0]) and torch.equal(out[2], cond[2])
    assert (out[1] == 9.0).all() and out_mask[1].tolist() == [True, False, False, False]


def test_factory_kinds() -> None:
    assert isinstance(build_text_encoder("learned"), LearnedTextEncoder)
    with pytest.raises(ValueError, match="unknown text encoder"):
        build_text_encoder("t5")
    auto = build_text_encoder("auto")
    assert isinstance(auto, LearnedTextEncoder) == (minilm_path() is None)


@pytest.mark.parametrize("kind", ["auto", "learned"])
def test_an_encoders_id_is_known_without_building_it(kind: str) -> None:
    assert encoder_id_for(kind) == build_text_encoder(kind).encoder_id
    small = LearnedTextConfig(dim=64, n_heads=2)
    assert encoder_id_for("learned", small) == LearnedTextEncoder(small).encoder_id != encoder_id_for("learned")
    with pytest.raises(ValueError, match="unknown text encoder"):
        encoder_id_for("t5")


def test_minilm_loads_offline_and_encodes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    encoder = build_text_encoder("minilm")
    assert encoder.dim == 384 and not encoder.trainable
    assert encoder.encoder_id.startswith("minilm-l6-v2:") and len(encoder.encoder_id) == len("minilm-l6-v2:") + 16
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not encoder.model.training  # frozen: dropout stays off
    emb, mask = encoder(CAPTIONS)
    assert emb.shape[0] == 3 and emb.shape[2] == 384 and mask.shape == emb.shape[:2]
    assert mask.dtype == torch.bool and mask.sum(dim=1).tolist()[2] == 2  # "" is [CLS] [SEP]
    again, _ = encoder(CAPTIONS)
    torch.testing.assert_close(emb, again)  # deterministic
    # similar captions land closer than unrelated ones (mean-pooled, as the sentence model is used)
    pooled, pooled_mask = encoder(["calm piano melody", "gentle piano tune", "heavy metal drums"])
    weights = pooled_mask.float()[..., None]
    vectors = torch.nn.functional.normalize((pooled * weights).sum(1) / weights.sum(1), dim=-1)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
