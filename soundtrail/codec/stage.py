"""The codec stage against the ledger: which assets train it, which codec is the workspace codec, its record.

:mod:`soundtrail.codec.codecs` runs a codec on audio (training one is :mod:`soundtrail.train.codec`); this
module decides *which* assets (accepted ones, minus a held-out set for evaluation), which codec the workspace
uses, and records codecs as :class:`~soundtrail.provenance.records.CodecRecord`, so that any shard can be
traced to the codec and the assets behind it.

The workspace codec is a recorded choice (ledger table ``choices``, row ``codec``, event ``codec.chosen``), not
the newest codec: ``codec train`` chooses the codec it trained, ``codec use`` an earlier one, ``[codec]
checkpoint`` a user's pretrained one, and ``soundtrail run`` keeps the choice unless ``[codec] retrain`` says
otherwise (:func:`plan_codec`). Shards, generators and the screen follow it, so a run that brings new assets
encodes just those, with the codec the existing shards were made with, into the same shard set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soundtrail import checkpoint
from soundtrail.codec.codecs import codec_id_of, load_codec
from soundtrail.codec.quality import evaluate_codec
from soundtrail.codec.tokenize import TokenizePlan, plan_tokenize
from soundtrail.data.storage import Storage
from soundtrail.provenance.ledger import Ledger, utc_now
from soundtrail.provenance.records import CodecRecord
from soundtrail.workspace import Workspace

HELD_OUT_EVERY = 8  # every 8th accepted asset (by id) is kept out of codec training for `codec eval`
WORKSPACE_CODEC = "codec"  # the ``choices`` row naming the workspace codec


def split_assets(assets: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, held out): deterministic by asset id; at least one of each once there are two assets."""
    ordered = sorted(assets, key=lambda row: row["id"])
    held = [row for index, row in enumerate(ordered) if index % HELD_OUT_EVERY == HELD_OUT_EVERY - 1]
    if not held and len(ordered) >= 2:
        held = [ordered[-1]]
    train = [row for row in ordered if row not in held]
    return train, held


def record_codec(ledger: Ledger, record: CodecRecord) -> CodecRecord:
    """Record a trained or imported codec (keeping the first ``created_at``); returns it as the ledger holds it."""
    existing = ledger.get("codecs", record.id)
    fields = dict(record.fields(), created_at=existing["created_at"] if existing else utc_now())
    ledger.record("codecs", record.id, fields, "codec.trained" if record.kind == "soundtrail" else "codec.imported")
    return CodecRecord.from_row(ledger.get("codecs", record.id))


def register_pretrained(ledger: Ledger, path: Path) -> CodecRecord:
    """Record a user's local pretrained codec (soundtrail or transformers Encodec dir).

    Once recorded at this path, only its weights are hashed again (the id): loading a large model to find it
    unchanged would cost every scheduled run seconds.
    """
    path = Path(path).resolve()
    weights = path / checkpoint.WEIGHTS
    if weights.is_file():
        row = ledger.get("codecs", codec_id_of(weights))
        if row is not None and row["path"] == str(path):
            return CodecRecord.from_row(row)
    codec = load_codec(path)
    return record_codec(ledger, CodecRecord(
        codec.codec_id, "pretrained", str(path),
        config={"sample_rate": codec.sample_rate, "frame_rate": codec.frame_rate,
                "num_codebooks": codec.num_codebooks, "codebook_size": codec.codebook_size}))


def workspace_codec(ledger: Ledger) -> CodecRecord | None:
    """The codec chosen for the workspace, read through the chain (None while the workspace has no codec)."""
    choice = ledger.verified_rows("choices", ids=[WORKSPACE_CODEC])
    if not choice:
        return _newest_before_choices(ledger)
    rows = ledger.verified_rows("codecs", ids=[choice[0]["chosen_id"]])
    if not rows:
        raise ValueError(f"the workspace codec {choice[0]['chosen_id']} has no codec record in the ledger")
    return CodecRecord.from_row(rows[0])


def choose_codec(ledger: Ledger, codec_id: str, reason: str, run_id: str | None = None) -> bool:
    """Make the recorded codec ``codec_id`` the workspace codec; False, appending nothing, if it already is."""
    if ledger.get("codecs", codec_id) is None:
        raise ValueError(f"no codec {codec_id!r} in the ledger")
    current = ledger.get("choices", WORKSPACE_CODEC)
    if current is not None and current["chosen_id"] == codec_id:
        return False
    return ledger.record("choices", WORKSPACE_CODEC, {"chosen_id": codec_id, "reason": reason,
                                                     "chosen_at": utc_now()}, "codec.chosen", run_id=run_id)


def configured_checkpoint(workspace: Workspace) -> Path | None:
    """``[codec] checkpoint`` as a path (relative ones are in the workspace), or None when the key is empty."""
    value = workspace.settings.codec.checkpoint
    return workspace.root / Path(value).expanduser() if value else None


def _configured_pretrained(workspace: Workspace, ledger: Ledger) -> CodecRecord | None:
    """The ``[codec] checkpoint`` codec, recorded and chosen on first use; None when none is configured."""
    path = configured_checkpoint(workspace)
    if path is None:
        return None
    codec = register_pretrained(ledger, path)
    choose_codec(ledger, codec.id, f"[codec] checkpoint = {workspace.settings.codec.checkpoint}")
    return codec


def _newest_before_choices(ledger: Ledger) -> CodecRecord | None:
    """A workspace from before codec choices were recorded used its newest codec: record that as the choice."""
    rows = sorted(ledger.verified_rows("codecs"), key=lambda row: (row.get("created_at") or "", row["id"]))
    if not rows:
        return None
    choose_codec(ledger, rows[-1]["id"], "the newest codec, the workspace codec before choices were recorded")
    return CodecRecord.from_row(rows[-1])


def resolve_codec(workspace: Workspace, codec_id: str | None = None) -> CodecRecord:
    """The codec named, else the workspace codec: the configured pretrained one, else the one chosen."""
    with Ledger(workspace.ledger_url) as ledger:
        if codec_id is not None:
            row = ledger.get("codecs", codec_id)
            if row is None:
                raise ValueError(f"no codec {codec_id!r} in the ledger")
            return CodecRecord.from_row(row)
        chosen = _configured_pretrained(workspace, ledger) or workspace_codec(ledger)
    if chosen is None:
        raise ValueError("no codec yet: run `soundtrail codec train` or set codec.checkpoint in soundtrail.toml")
    return chosen


def use_codec(workspace: Workspace, codec_id: str) -> tuple[CodecRecord, bool]:
    """``soundtrail codec use``: make a recorded codec the workspace codec; (its record, whether that changed)."""
    if workspace.settings.codec.checkpoint:
        raise ValueError("[codec] checkpoint names the workspace codec in soundtrail.toml: change it there")
    with Ledger(workspace.ledger_url) as ledger:
        changed = choose_codec(ledger, codec_id, "`soundtrail codec use`")
        return CodecRecord.from_row(ledger.get("codecs", codec_id)), changed


@dataclass(frozen=True)
class CodecPlan:
    """What ``soundtrail run`` does about the codec: keep ``codec`` (the workspace codec), or train one."""

    codec: CodecRecord | None  # None: train one (and choose it)
    reason: str

    @property
    def train(self) -> bool:
        return self.codec is None


def plan_codec(workspace: Workspace) -> CodecPlan:
    """Keep the workspace codec unless there is none or ``[codec] retrain`` asks for a new one.

    A new codec means every asset encoded again into a new shard set and every generator trained again, so by
    default (``retrain = "never"``) only ``codec train`` replaces it. With ``"when-assets-change"`` a codec
    trained here is replaced once the accepted assets it would train on (the held-out ones aside) differ from
    those it trained on; a pretrained codec is never retrained.
    """
    retrain = workspace.settings.codec.retrain
    with Ledger(workspace.ledger_url) as ledger:
        pretrained = _configured_pretrained(workspace, ledger)
        if pretrained is not None:
            return CodecPlan(pretrained, "[codec] checkpoint names it")
        chosen = workspace_codec(ledger)
        if chosen is None:
            return CodecPlan(None, "the workspace has no codec yet")
        if retrain == "never" or chosen.kind != "soundtrail":
            return CodecPlan(chosen, f"the workspace codec ([codec] retrain = \"{retrain}\")")
        train_rows, _ = split_assets(ledger.verified_rows("assets", status="accepted"))
    trained_on = checkpoint.read_config(Storage.of(workspace).fetch(chosen.path)).get("data")
    if trained_on == sorted({row["path"] for row in train_rows}):
        return CodecPlan(chosen, "the workspace codec: the assets it trains on are unchanged")
    return CodecPlan(None, f"the accepted assets changed since codec {chosen.id} trained "
                           f"([codec] retrain = \"{retrain}\")")


def tokenize_plan(workspace: Workspace, codec: CodecRecord) -> TokenizePlan:
    """What tokenizing the workspace's accepted assets with ``codec`` has to do (see :func:`plan_tokenize`)."""
    settings = workspace.settings.tokenize
    with Ledger(workspace.ledger_url) as ledger:
        storage = Storage.of(workspace)
        return plan_tokenize(ledger, storage.shards(), str(storage.fetch(codec.path)), codec.id,
                             settings.segment_s, settings.assets_per_shard)


def evaluate_workspace_codec(workspace: Workspace, codec_id: str | None = None) -> dict[str, Any]:
    """SI-SNR, mel distance and bitrate of a codec (default: the workspace codec) on the held-out accepted assets."""
    codec = resolve_codec(workspace, codec_id)
    with Ledger(workspace.ledger_url) as ledger:
        _, held = split_assets(ledger.rows("assets", status="accepted"))
    paths = [asset["path"] for asset in held if asset["id"] not in set(codec.assets)]
    if not paths:
        raise ValueError("no held-out accepted asset to evaluate on")
    loaded = load_codec(Storage.of(workspace).fetch(codec.path))
    return {"codec_id": codec.id, "held_out": len(paths), **evaluate_codec(loaded, paths)}
