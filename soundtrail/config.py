"""Workspace settings: one ``soundtrail.toml`` per workspace, read with pydantic.

Every key has a default, so a workspace without the file works. Unknown keys are an error
that names the key (``extra="forbid"``): a typo in a licence policy must never be silently
ignored, because the policy decides what may be trained on.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails

from soundtrail.licenses import LicenseConfigError, LicensePolicy, validate_aliases

CONFIG_NAME = "soundtrail.toml"
DEFAULT_WORKSPACE = "workspace"


class ConfigError(ValueError):
    """The workspace configuration is invalid; the message names the file and the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LedgerSettings(_Section):
    """Signed checkpoints of the ledger (``soundtrail ledger checkpoint``); paths are relative to the workspace."""

    signing_key: str = Field("", description="Ed25519 private key (PEM); '' makes one in credentials/ on first use")
    checkpoints: str = Field("reports/checkpoints", description="where checkpoints are written and looked for")
    origin: str = Field("", description="the ledger's name in its checkpoints; '' = its URL without a password")
    tsa_url: str = Field("", description="RFC 3161 timestamp authority; '' = checkpoints carry no timestamp")
    tsa_roots: str = Field("", description="PEM file of the TSA root certificates trusted when checking tokens")


class LicenseSettings(_Section):
    allow: list[str] = Field(default_factory=lambda: ["CC0-1.0", "CC-BY-4.0", "CC-BY-SA-4.0"])
    deny: list[str] = Field(default_factory=lambda: ["CC-BY-NC-4.0", "CC-BY-NC-SA-4.0", "CC-BY-ND-4.0"])
    aliases: dict[str, str] = Field(default_factory=dict)
    allow_base_models: list[str] = Field(default_factory=list, description="base models (by their [base_models] "
                                         "name) used although the policy refuses their licence: an exception on "
                                         "record, never a change of the policy")


class IngestSettings(_Section):
    # Each Prefect task carries a fixed scheduling cost; a batch of files keeps it small beside the analysis.
    batch_size: int = Field(16, ge=1, description="files per Prefect task")
    min_duration_s: float = Field(1.0, ge=0)
    max_duration_s: float = Field(1800.0, gt=0, description="longer files are quarantined, read from the header")
    max_decoded_mb: float = Field(4000.0, gt=0, description="files decoding to more float32 samples (frames x "
                                  "channels x 4 bytes) are quarantined: bounds the work one file may cost")
    silence_dbfs: float = Field(-70.0, description="files quieter than this RMS are digital silence")
    max_tag_bytes: int = Field(1_000_000, ge=1024)
    near_duplicate_ber: float = Field(0.2, gt=0, lt=0.5, description="Chromaprint BER below which two files are one")
    min_overlap_s: float = Field(5.0, gt=0)
    workers: int = Field(2, ge=1, description="Ray CPU workers used for ingestion when Ray is started locally")


class _MicroBatched(_Section):
    """A trainer's batch: ``batch_size`` examples per optimizer step on each worker, in ``grad_accum`` micro-batches
    (memory: one is live at a time)."""

    batch_size: int = Field(8, ge=1, description="examples per optimizer step on each worker")
    grad_accum: int = Field(1, ge=1, description="micro-batches each worker's batch is split into")

    @model_validator(mode="after")
    def _whole_micro_batches(self) -> _MicroBatched:
        if self.batch_size % self.grad_accum:
            raise ValueError(f"batch_size {self.batch_size} is not a multiple of grad_accum {self.grad_accum}")
        return self


class CodecSettings(_MicroBatched):
    """The workspace codec: a pretrained one, or one trained here, and when ``soundtrail run`` trains another."""

    checkpoint: str = Field("", description="local soundtrail or transformers Encodec dir (relative: in the "
                                            "workspace) used as the workspace codec; '' trains one")
    # A new codec re-encodes every asset into a new shard set and retrains every generator, so a run keeps the
    # workspace codec unless told otherwise; `soundtrail codec train` always trains (and chooses) one.
    retrain: Literal["never", "when-assets-change"] = Field(
        "never", description="when `soundtrail run` trains a new workspace codec once one exists")
    steps: int = Field(300, ge=1)
    segment_s: float = Field(1.0, gt=0)


class TokenizeSettings(_Section):
    segment_s: float = Field(5.0, gt=0)
    assets_per_shard: int = Field(8, ge=1, description="assets per shard, and per call to an encoder actor")
    batch_size: int = Field(16, ge=1)
    workers: int = Field(0, ge=0, description="encoder actors of one CPU each when the cluster has no GPU (0: one "
                                              "per CPU of the cluster); with GPUs, one actor per GPU")


class TrainSettings(_MicroBatched):
    ar_steps: int = Field(300, ge=1)  # <family>_steps: each generator family's default (its default_steps)
    diffusion_steps: int = Field(300, ge=1)
    musicgen_steps: int = Field(200, ge=1)
    # continue: a family trained again on new shards starts from its previous model's weights (recorded as the new
    # model's parent) unless that model saw an asset no longer accepted; scratch: always from new weights (or from
    # the family's base model)
    init: Literal["continue", "scratch"] = "continue"
    learning_rate: float = Field(1e-3, gt=0)
    crop_seconds: float = Field(2.0, gt=0, description="length of the training crops taken from shard segments")
    text_encoder: Literal["auto", "minilm", "learned"] = "auto"  # auto: the packaged MiniLM when installed
    ema_decay: float = Field(0.999, ge=0, lt=1, description="EMA of the weights that generation uses; 0 = none")
    loader_workers: int = Field(0, ge=0, description="DataLoader processes reading shards per worker; 0 = inline")
    seed: int = 0


class ModelSettings(_Section):
    """The size of each model, by preset name; the preset and its full config are recorded with the model.

    A generator family trained from scratch reads the key of its own name (the names match the family's
    ``presets`` table); a fine-tuning family (``musicgen``) has none: its base model sets its size.
    """

    ar: Literal["tiny", "small", "musicgen-small"] = "tiny"
    diffusion: Literal["tiny", "base"] = "tiny"
    codec: Literal["cpu-16k", "encodec-24k"] = "cpu-16k"


class ScalingSettings(_Section):
    """Data-parallel training on Ray Train (codec and generators): Ray Train's ``ScalingConfig``."""

    workers: int = Field(1, ge=1, description="data-parallel ranks; 1 trains in the stage's own Ray task")
    gpus_per_worker: Annotated[float, Field(ge=0)] | Literal["auto"] = Field(
        "auto", description="'auto': 1 when the cluster has GPUs, else 0")
    cpus_per_worker: float = Field(1.0, gt=0)
    max_failures: int = Field(2, ge=0, description="times a killed worker group restarts from its checkpoint")
class BaseModelSettings(_Section):
    """A pretrained model in a local folder that a fine-tuning family starts from (``[base_models.<family>]``).

    The base model is an input like an asset: its licence goes through ``[licenses]`` and it is recorded in the
    ledger, with the statement of what it was trained on, before anything trains from it.
    """

    path: str = Field(description="folder written by save_pretrained; relative paths are in the workspace")
    name: str = Field("", description="its published name (e.g. facebook/musicgen-small); '' = the folder's name")
    license: str = Field("", description="SPDX id of its weights' licence; '' = the model card's (README.md) "
                                         "`license:`")
    training_data: str = Field("", description="what its publisher says it was trained on (required)")
    lora_rank: int = Field(0, ge=0, description="0 trains every weight; r > 0 trains LoRA adapters of rank r "
                                                "on the decoder's linear layers instead")
    learning_rate: float = Field(1e-5, gt=0, description="fine-tuning moves pretrained weights less than [train] "
                                                         "learning_rate moves new ones (LoRA adapters take ~1e-4)")


_METHOD_THRESHOLD = re.compile(r"\w+_(flag|block)")


class ScreeningSettings(BaseModel):
    """Overrides of the release screen's thresholds; a key left out keeps the value the screen declares.

    The thresholds are declared once, with the screen (soundtrail.screening): ``min_match_s`` and
    ``boundary_tolerance_s`` in ``screener.ScreenThresholds``, each method's score thresholds (in [0, 1])
    ``<method>_flag`` and ``<method>_block`` on the method's class (``registry.METHODS`` lists them). Settings sit
    below the stages and cannot list the methods, so here any other key must have one of those two forms, and the
    screen rejects one naming no registered method when it reads the section.
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    __pydantic_extra__: dict[str, float] = Field(init=False)  # the <method>_flag / <method>_block keys given

    min_match_s: float | None = Field(None, gt=0, description="shortest copied stretch that counts")
    boundary_tolerance_s: float | None = Field(None, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _method_thresholds_only(cls, data: Any) -> Any:
        """A key that is neither a field nor of a method threshold's form is unknown, as in every other section."""
        if isinstance(data, dict):
            unknown = [InitErrorDetails(type="extra_forbidden", loc=(key,), input=value) for key, value in data.items()
                       if key not in cls.model_fields and not _METHOD_THRESHOLD.fullmatch(key)]
            if unknown:
                raise ValidationError.from_exception_data(cls.__name__, unknown)
        return data

    def overrides(self) -> dict[str, float]:
        """Every threshold the section sets, by its flat name."""
        shared = {"min_match_s": self.min_match_s, "boundary_tolerance_s": self.boundary_tolerance_s}
        return {**{key: value for key, value in shared.items() if value is not None}, **(self.model_extra or {})}


class WatermarkSettings(_Section):
    key: int = Field(0x50AD7A11, description="secret key seeding the watermark's spreading sequences")


class CredentialSettings(_Section):
    sign_cert: str = Field("", description="PEM certificate chain; '' generates a local demo CA in the workspace")
    sign_key: str = ""


class LineageSettings(_Section):
    transport: Literal["file", "http"] = "file"
    url: str = ""
    namespace: str = "soundtrail"


class PipelineSettings(_Section):
    """What ``soundtrail run`` does end to end over the workspace's inputs."""

    inputs: list[str] = Field(default_factory=lambda: ["inputs"], description="relative to the workspace")
    manifest: str = Field("inputs/manifest.jsonl", description="'' for none; relative to the workspace")
    models: list[str] = Field(default_factory=lambda: ["ar", "diffusion"],
                              description="generator families to train, checked against the registry when the "
                                          "pipeline starts (soundtrail.train.families)")
    prompts: list[str] = Field(default_factory=lambda: [
        "upbeat electronic track with bright synth lead, drums and bass",
        "calm ambient piece with soft pads and slow tempo",
    ])
    # when-shards-change: a family whose model did not see the current shards trains a new one on them (where
    # from is [train] init's decision); never: once a family has a model, runs keep generating with it
    # (`soundtrail train` still trains)
    retrain_models: Literal["when-shards-change", "never"] = "when-shards-change"
    generate_seconds: float = Field(4.0, gt=0)
    seed: int = 0


class Settings(_Section):
    """The whole ``soundtrail.toml``; field names are the TOML keys."""

    ledger_url: str = "sqlite:///ledger.db"
    ray_address: str = ""
    storage_uri: str = Field("", description="pyarrow.fs URI (s3://, gs://, abfs://, file://) for shards and "
                                             "published checkpoints; '' keeps them in the workspace")
    ledger: LedgerSettings = Field(default_factory=LedgerSettings)
    licenses: LicenseSettings = Field(default_factory=LicenseSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    codec: CodecSettings = Field(default_factory=CodecSettings)
    tokenize: TokenizeSettings = Field(default_factory=TokenizeSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    scaling: ScalingSettings = Field(default_factory=ScalingSettings)
    base_models: dict[str, BaseModelSettings] = Field(
        default_factory=dict, description="family name -> the pretrained model it fine-tunes (checked against the "
                                          "registry when that family trains)")
    screening: ScreeningSettings = Field(default_factory=ScreeningSettings)
    watermark: WatermarkSettings = Field(default_factory=WatermarkSettings)
    credentials: CredentialSettings = Field(default_factory=CredentialSettings)
    lineage: LineageSettings = Field(default_factory=LineageSettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)


# Cluster pods get their ledger, Ray address and storage from the environment (a Secret, the RayJob spec),
# not from a file baked into the image.
ENVIRONMENT_OVERRIDES = {
    "SOUNDTRAIL_LEDGER_URL": "ledger_url",
    "SOUNDTRAIL_RAY_ADDRESS": "ray_address",
    "SOUNDTRAIL_STORAGE_URI": "storage_uri",
}


def apply_environment(settings: Settings) -> Settings:
    """Settings with the ``SOUNDTRAIL_*`` environment overrides applied (they win over the TOML file)."""
    updates = {key: os.environ[name] for name, key in ENVIRONMENT_OVERRIDES.items() if os.environ.get(name)}
    return settings.model_copy(update=updates) if updates else settings


def load_settings(path: Path) -> Settings:
    """Read ``path`` if it exists (defaults otherwise); raise :class:`ConfigError` naming bad keys."""
    if not path.exists():
        return Settings()
    try:
        document = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        settings = Settings.model_validate(document)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"])
            message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
            problems.append(f"{key}: {message}")
        raise ConfigError(f"{path}: " + "; ".join(problems)) from exc
    _check_license_policy(path, settings.licenses)
    return settings


def _check_license_policy(path: Path, licenses: LicenseSettings) -> None:
    """Policy lists and aliases must name real SPDX ids: a typo would silently change what is allowed."""
    try:
        LicensePolicy(allow=licenses.allow, deny=licenses.deny)
        validate_aliases(licenses.aliases)
    except LicenseConfigError as exc:
        raise ConfigError(f"{path}: [licenses] {exc}") from exc
