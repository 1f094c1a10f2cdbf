"""A small real release workspace and the clips the release tests put through its gate.

:func:`build_release_workspace` ingests three melodies, tokenizes them with a tiny codec and records a model
row trained on those shards (no weights: the gate only needs its lineage); :func:`train_tiny_ar` gives the
workspace a real, tiny AR generator when a test generates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from soundtrail import checkpoint
from soundtrail.atomic import sha256_file
from soundtrail.codec.codecs import KIND, codec_id_of
from soundtrail.config import Settings
from soundtrail.data.shards import iter_segments
from soundtrail.data.storage import Storage
from soundtrail.models.ar import ARConfig
from soundtrail.models.codec import NeuralCodec
from soundtrail.models.conditioning import LearnedTextConfig, LearnedTextEncoder
from soundtrail.provenance.ledger import Ledger, utc_now
from soundtrail.provenance.records import ModelRecord
from soundtrail.screening.stage import screening_index
from soundtrail.train.ar import batches_from_examples, train_ar
from soundtrail.train.loop import LoopConfig
from soundtrail.workspace import Workspace
from tests.audio_fixtures import RATE, melody, write, write_manifest
from tests.codec.test_tokenize import TINY, tokenize
from tests.ingest.test_catalog import ingest

MODEL = "ar-test-model"
ASSET_SECONDS = 12.0


def build_release_workspace(root: Path) -> Path:
    """A workspace with three accepted assets, their token shards from a tiny codec, a model row trained on them
    and its screening index built; returns the workspace folder."""
    corpus = root / "corpus"
    rows = []
    for seed in (11, 12, 13):
        write(corpus / f"track{seed}.flac", melody(seed, ASSET_SECONDS))
        rows.append({"path": f"track{seed}.flac", "license": "CC-BY-4.0", "rights_holder": f"Label {seed}"})
    workspace = Workspace(root / "ws", Settings())
    ingest(workspace, [corpus], write_manifest(corpus, rows))
    ledger = Ledger(workspace.ledger_url)
    codec_path, codec_id = corpus_codec(workspace.path("checkpoints") / "codec", sorted(corpus.glob("*.flac")))
    ledger.record("codecs", codec_id, {"kind": "soundtrail", "path": codec_path, "created_at": utc_now()},
                  "codec.trained")
    tokenize(ledger, Storage.of(workspace).shards(), codec_path, codec_id)
    shards = [row["id"] for row in ledger.rows("shards", status="current")]
    ledger.record("models", MODEL, {"kind": "ar", "codec_id": codec_id, "shards": shards, "created_at": utc_now()},
                  "model.trained")
    screening_index(workspace, ledger)
    ledger.close()
    return workspace.root


def corpus_codec(folder: Path, paths: list[Path]) -> tuple[str, str]:
    """The tokenize tests' tiny codec with codebooks k-means-initialised on the corpus, as its first training
    step does: untrained codebooks map every frame to one code, and the token method needs varied codes."""
    from soundtrail.audio import load_mono

    torch.manual_seed(0)
    model = NeuralCodec(TINY).train()
    audio = np.stack([load_mono(path, TINY.sample_rate) for path in paths])
    with torch.no_grad():
        model(torch.from_numpy(audio)[:, None])
    checkpoint.save_weights(folder, model.eval(), KIND, TINY, step=0)
    return str(folder), codec_id_of(folder / checkpoint.WEIGHTS)


def train_tiny_ar(workspace: Workspace, steps: int = 2) -> ModelRecord:
    """A real AR generator a few layers wide, trained ``steps`` steps on the workspace's shards, recorded."""
    with Ledger(workspace.ledger_url) as ledger:
        model_row = ledger.get("models", MODEL)
        shards = ledger.rows("shards", status="current")
    storage = Storage.of(workspace)
    codes = [torch.from_numpy(row["codes"].astype(np.int64)) for shard in shards
             for row in iter_segments(storage.locate(shard["path"]), columns=["codes"])]
    frames = min(piece.shape[-1] for piece in codes)
    examples = torch.stack([piece[:, :frames] for piece in codes])
    directory = workspace.path("checkpoints") / "tiny-ar"
    config = ARConfig(n_codebooks=TINY.num_codebooks, codebook_size=TINY.codebook_size, d_model=32, n_layers=1,
                      n_heads=2, max_steps=8 * 250 + TINY.num_codebooks + 1)
    encoder = LearnedTextEncoder(LearnedTextConfig(dim=16, n_layers=1, n_heads=2, buckets=64))
    train_ar(batches_from_examples(examples, ["plucked melody"] * len(examples), batch_size=2), directory, config,
             LoopConfig(steps=steps, checkpoint_every=steps), text_encoder=encoder)
    record = ModelRecord(sha256_file(directory / checkpoint.WEIGHTS)[:16], "ar", str(directory),
                         model_row["codec_id"], tuple(model_row["shards"]), steps=steps, created_at=utc_now())
    with Ledger(workspace.ledger_url) as ledger:
        ledger.record("models", record.id, record.fields(), "model.trained")
    return record


def asset_ids(workspace: Workspace) -> dict[str, str]:
    """File name -> accepted asset id."""
    with Ledger(workspace.ledger_url) as ledger:
        rows = ledger.rows("assets", status="accepted")
    return {Path(row["path"]).name: row["id"] for row in rows}


def generated(audio: np.ndarray, path: Path) -> Path:
    """Write ``audio`` with the quiet noise floor a codec's decoder leaves (-46 dBFS).

    The bare synthetic melodies have bands of digital silence between notes, where the watermark has no host
    energy to ride on; real generated audio never does.
    """
    floor = 0.005 * np.random.default_rng(len(audio)).standard_normal(len(audio)).astype(np.float32)
    sf.write(str(path), audio + floor, RATE)
    return path


def copied_excerpt(tmp_path: Path, name: str = "copy.wav") -> Path:
    """8 s of track12 (from its 2 s mark) inside 12 s of unrelated music."""
    excerpt = melody(12, ASSET_SECONDS)[2 * RATE:10 * RATE]
    return generated(np.concatenate([melody(101, 2.0), excerpt, melody(102, 2.0)]), tmp_path / name)


def unrelated(tmp_path: Path, seed: int = 200, name: str = "new.wav") -> Path:
    return generated(melody(seed, 10.0), tmp_path / name)
