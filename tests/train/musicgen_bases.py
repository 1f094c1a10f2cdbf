"""Tiny randomly initialised base models saved as ``save_pretrained`` writes them: an EnCodec, a MusicGen decoder
and a full MusicGen (its T5 and tokenizer too), small enough to fine-tune in seconds on a CPU, all offline."""

from __future__ import annotations

from pathlib import Path

import torch

RATE = 8000  # Hz; the EnCodec's hop is 32 samples: 250 frames/s
CODEBOOKS, CODES = 2, 64
WORDS = ["melody", "calm", "bright", "track", "piano", "soft", "pads", "drums", "bass", "slow", "tempo",
         *"0123456789"]


def tiny_encodec(folder: Path, seed: int = 0) -> Path:
    """A mono 8 kHz EnCodec with 2 codebooks of 64 codes (random codebooks: a fresh one has them all zero)."""
    from transformers import EncodecConfig, EncodecModel

    torch.manual_seed(seed)
    model = EncodecModel(EncodecConfig(sampling_rate=RATE, num_filters=4, upsampling_ratios=[8, 4], hidden_size=16,
                                       codebook_size=CODES, target_bandwidths=[3.0], num_lstm_layers=1)).eval()
    for layer in model.quantizer.layers:
        layer.codebook.embed.normal_()
    model.save_pretrained(folder)
    return folder


def tiny_decoder(seed: int = 0, codebooks: int = CODEBOOKS, codes: int = CODES):
    """A 2-layer MusicGen decoder (width 32) over ``codebooks`` codebooks of ``codes`` codes."""
    from transformers import MusicgenDecoderConfig, MusicgenForCausalLM

    torch.manual_seed(seed)
    config = MusicgenDecoderConfig(vocab_size=codes, num_codebooks=codebooks, hidden_size=32, num_hidden_layers=2,
                                   num_attention_heads=2, ffn_dim=64, max_position_embeddings=1024,
                                   pad_token_id=codes, bos_token_id=codes, decoder_start_token_id=codes)
    return MusicgenForCausalLM(config)


def word_tokenizer(words: list[str]):
    """A word-level tokenizer in T5's layout (pad 0, end 1, unknown 2), made offline as a stand-in for T5's."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocabulary = ["<pad>", "</s>", "<unk>", *words]
    table = Tokenizer(models.WordLevel({word: index for index, word in enumerate(vocabulary)}, unk_token="<unk>"))
    table.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=table, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def tiny_musicgen(folder: Path, encodec: Path, seed: int = 0, card_license: str | None = None) -> Path:
    """A full MusicGen (T5 of width 16, so a projection to the decoder's 32) reading ``encodec``'s codes, with its
    tokenizer saved beside it; ``card_license`` writes a model card declaring that licence."""
    from transformers import EncodecModel, MusicgenForConditionalGeneration, T5Config, T5EncoderModel

    torch.manual_seed(seed)
    tokenizer = word_tokenizer(WORDS)
    t5 = T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                                 pad_token_id=0, eos_token_id=1))
    model = MusicgenForConditionalGeneration(text_encoder=t5, audio_encoder=EncodecModel.from_pretrained(encodec),
                                             decoder=tiny_decoder(seed))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if card_license:
        (folder / "README.md").write_text(f"---\nlicense: {card_license}\ntags:\n- music\n---\n# tiny MusicGen\n")
    return folder


def tiny_decoder_base(folder: Path, seed: int = 0) -> Path:
    """A bare MusicgenForCausalLM (no text encoder, no EnCodec)."""
    tiny_decoder(seed).save_pretrained(folder)
    return folder
