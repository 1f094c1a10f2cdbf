"""Where a generator's training starts, decided against the ledger: the family's previous model, or afresh.

A family trained again on new shards continues from its previous model: the new model's ``parent``, whose weights
(and so everything the parent saw: :mod:`soundtrail.provenance.lineage` counts it) it starts from. A previous
model is not continued from when its weights cannot or must not carry over; the new model then starts afresh
and records it as its ``predecessor``, with the reason::

    previous: the family's newest model trained on other shards, preferring the shards' codec (a model of the
    current shards is this run's own earlier result, or a sibling with other settings: never a parent)

        no previous model ............................................ afresh
        [train] init = "scratch" ..................................... afresh, predecessor
        trained on another codec's tokens (its codes mean other sounds) afresh, predecessor
        another text encoder, or another base model .................. afresh, predecessor
        another ``[model]`` preset (its weights fit another size) ..... afresh, predecessor
        its checkpoint is gone ....................................... afresh, predecessor
        it, or a model it continued from, learned from an asset that is
        no longer accepted (revoked by a takedown, disputed, ...) ..... afresh, predecessor
        a takedown marked it (through its shards, parent or codec) ... afresh, predecessor
        otherwise .................................................... continue: parent

"Afresh" is the family's fresh start: random weights, or the base model a fine-tuning family starts from. The
rows this reads are checked against their events (an asset relabelled ``accepted`` in the table behind the
chain's back stops training rather than let a model carrying the work be continued). The same ledger gives the
same decision, so a re-run finds its own checkpoint folder (named after the parent) and resumes it.

A base model is admitted like an asset (:func:`admit_base_model`): its licence, from ``[base_models.<family>]``
or its model card, goes through ``[licenses]`` (``deny`` wins; ``allow_base_models`` names exceptions, on record);
a training-data statement is required; the outcome is recorded in the ledger's ``base_models`` table before
anything trains from it, and a refusal stops training with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from soundtrail import checkpoint
from soundtrail.data.location import StorageError
from soundtrail.data.storage import Storage
from soundtrail.licenses import LicensePolicy, normalize_license
from soundtrail.provenance.ledger import Ledger, utc_now
from soundtrail.provenance.lineage import model_ancestors
from soundtrail.provenance.records import AFFECTED_BY_TAKEDOWN, BaseModelRecord, ModelRecord
from soundtrail.train.families import family
from soundtrail.train.generator import TrainingData
from soundtrail.train.pretrained import read_pretrained
from soundtrail.workspace import Workspace

MAX_NAMED = 3  # withdrawn assets named in a reason; the rest are counted


class BaseModelRefused(ValueError):
    """The base model may not be trained from; the message is the reason recorded in the ledger."""


@dataclass(frozen=True)
class Start:
    """Where one training run begins: ``parent``'s weights, or afresh (``predecessor``: the model not continued)."""

    reason: str
    parent: ModelRecord | None = None
    predecessor: str | None = None

    @property
    def init(self) -> str | None:
        """Where the checkpoint the run starts from is recorded (fetched from storage for the run's
        ``GeneratorSettings.init``)."""
        return self.parent.path if self.parent is not None else None


def starting_point(workspace: Workspace, kind: str, data: TrainingData, text_encoder: str,
                   base: BaseModelRecord | None, preset: str | None = None) -> Start:
    """Continue from the family's previous model or start afresh; see the module docstring for the rules.

    ``text_encoder`` is the id of the encoder this run reads captions with; ``base`` the admitted base model of a
    fine-tuning family; ``preset`` the model size this run builds (None: a fine-tuning family's, its base's).
    """
    fresh = f"from base model {base.name}" if base is not None else "from scratch"
    with Ledger(workspace.ledger_url) as ledger:
        models = [ModelRecord.from_row(row) for row in ledger.verified_rows("models", kind=kind)]
        earlier = sorted((model for model in models if set(model.shards) != set(data.shard_ids)),
                         key=lambda model: (model.created_at or "", model.id))
        if not earlier:
            return Start(f"{fresh}: no earlier {kind} model")
        same_codec = [model for model in earlier if model.codec_id == data.codec_id]
        previous = (same_codec or earlier)[-1]
        why_not = _why_not_continue(workspace, ledger, previous, data, text_encoder, base, preset)
    if why_not:
        return Start(f"{fresh}, not continued from {kind} model {previous.id}: {why_not}", predecessor=previous.id)
    return Start(f"continued from {kind} model {previous.id}, trained on other shards", parent=previous)


def _why_not_continue(workspace: Workspace, ledger: Ledger, previous: ModelRecord, data: TrainingData,
                      text_encoder: str, base: BaseModelRecord | None, preset: str | None) -> str | None:
    """Why ``previous`` cannot be this run's parent, or None when it can."""
    if workspace.settings.train.init == "scratch":
        return '[train] init = "scratch"'
    if previous.codec_id != data.codec_id:
        return f"it was trained on codec {previous.codec_id}'s tokens, the shards hold codec {data.codec_id}'s"
    if previous.text_encoder != text_encoder:
        return f"it reads captions with text encoder {previous.text_encoder}, this run with {text_encoder}"
    base_id = base.id if base is not None else None
    if previous.base_model != base_id:
        return f"it descends from base model {previous.base_model or 'none'}, this run from {base_id or 'none'}"
    previous_preset = previous.training.get("preset", preset)  # a model recorded without one: not compared
    if previous_preset != preset:
        return f"it is of the {previous_preset} preset, this run of the {preset} preset ([model])"
    try:
        fetched = Storage.of(workspace).fetch(previous.path)
    except (StorageError, OSError):
        fetched = None
    if fetched is None or not checkpoint.is_complete(fetched):
        return f"its checkpoint is missing from {previous.path}"
    withdrawn = withdrawn_assets(ledger, previous.id)
    if withdrawn:
        named = ", ".join(f"{row['id']} ({row['status']}{': ' + row['reason'] if row.get('reason') else ''})"
                          for row in withdrawn[:MAX_NAMED])
        more = f" and {len(withdrawn) - MAX_NAMED} more" if len(withdrawn) > MAX_NAMED else ""
        return f"its weights learned from assets no longer accepted: {named}{more}"
    if previous.status == AFFECTED_BY_TAKEDOWN:
        return f"takedown {', '.join(previous.takedowns)} marked it"
    return None


def withdrawn_assets(ledger: Ledger, model_id: str) -> list[dict]:
    """The assets a model's weights learned from (its shards and those of every model it continued from) whose
    status is no longer ``accepted``; every row read is checked against its events."""
    chain = ledger.verified_rows("models", ids=[model_id, *(row["id"] for row in model_ancestors(ledger, model_id))])
    shards = ledger.verified_rows("shards", ids=[shard for model in chain for shard in model.get("shards") or []])
    learned = {asset for shard in shards for asset in shard.get("asset_ids") or []}
    return [row for row in ledger.verified_rows("assets", ids=learned) if row["status"] != "accepted"]


def admit_base_model(workspace: Workspace, kind: str) -> BaseModelRecord | None:
    """The base model ``[base_models.<kind>]`` names, admitted and recorded; None for a family trained from scratch.

    Raises :class:`BaseModelRefused` (after recording the refusal) when its licence or statement does not pass,
    and ``ValueError`` when the family and the configuration disagree about having a base model at all.
    """
    settings = workspace.settings.base_models.get(kind)
    if not family(kind).fine_tunes:
        if settings is not None:
            raise ValueError(f"[base_models.{kind}]: the {kind} family trains from scratch; it takes no base model")
        return None
    if settings is None:
        raise ValueError(f"the {kind} family fine-tunes a pretrained model: name its folder in "
                         f"[base_models.{kind}] path")
    path = Path(settings.path)
    folder = read_pretrained(path if path.is_absolute() else workspace.root / path)
    name = settings.name or folder.path.name
    licenses = workspace.settings.licenses
    stated = normalize_license(settings.license, licenses.aliases) if settings.license else None
    card = normalize_license(folder.card_license, licenses.aliases) if folder.card_license else None
    declared, source = (stated, "config") if stated is not None else (card, "model card")
    policy, reason = "refuse", None
    if declared is None:
        reason = f"no licence declared: set [base_models.{kind}] license, or give the folder a model card with one"
    elif stated is not None and card is not None and stated.spdx_id != card.spdx_id:
        reason = (f"licences disagree: [base_models.{kind}] says {stated.spdx_id or repr(settings.license)}, the "
                  f"model card {card.spdx_id or repr(folder.card_license)}")
    elif not settings.training_data.strip():
        reason = f"no training-data statement: set [base_models.{kind}] training_data to what its publisher says"
    else:
        decision = LicensePolicy(licenses.allow, licenses.deny).decide(declared)
        if decision.accepted:
            policy = "allow"
        elif declared.status == "ok" and name in licenses.allow_base_models:
            policy, reason = "exception", f"{decision.reason}; allowed by name in [licenses] allow_base_models"
        else:
            reason = f"{decision.reason} (allow it by name in [licenses] allow_base_models)"
    status = "refused" if policy == "refuse" else "accepted"
    with Ledger(workspace.ledger_url) as ledger:
        existing = ledger.get("base_models", folder.id)
        record = BaseModelRecord(
            folder.id, name, str(folder.path.resolve()), folder.architecture,
            declared.spdx_id if declared is not None else None, source if declared is not None else None,
            settings.training_data.strip(), status, policy, reason,
            existing["recorded_at"] if existing else utc_now())
        ledger.record("base_models", record.id, record.fields(), f"base_model.{status}")
    if status == "refused":
        raise BaseModelRefused(f"base model {name} ({folder.id}) refused: {reason}")
    return record
