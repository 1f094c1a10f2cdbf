"""A workspace's ledger checkpoints: take one, check the ledger against them, prove an entity's events.

Where things live (``[ledger]`` in soundtrail.toml, paths relative to the workspace)::

    signing key   credentials/ledger-checkpoint-key.pem, made on first use  ([ledger] signing_key to bring one)
    checkpoints   reports/checkpoints/checkpoint-<size>-<time>.json          ([ledger] checkpoints)
    timestamps    a token from [ledger] tsa_url on every checkpoint; tokens checked against [ledger] tsa_roots

:func:`take_checkpoint` refuses to sign a ledger that fails ``ledger verify`` or no longer extends the
newest checkpoint in the folder, so the operator's own tool never signs a rewritten history. Copies of
the checkpoints kept outside the workspace are what make that matter: whoever controls the workspace can
delete the folder, but not an auditor's copies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509 import Certificate
from sqlalchemy.engine import make_url

from soundtrail.provenance.ledger import Ledger, VerifyReport, utc_now
from soundtrail.provenance.merkle import MerkleTree
from soundtrail.provenance.proofs import consistency_proof, inclusion_proof, verify_proof
from soundtrail.provenance.timestamp import load_roots, request_timestamp
from soundtrail.provenance.tree_head import (
    Checkpoint,
    CheckpointCheck,
    CheckpointError,
    Comparison,
    check_checkpoint,
    compare,
    event_leaf,
    load_signing_key,
    make_statement,
    read_checkpoint,
    sign,
    write_checkpoint,
)
from soundtrail.workspace import Workspace

KEY_FILE = "ledger-checkpoint-key.pem"


@dataclass
class CheckpointVerdict:
    """One checkpoint against today's ledger: its own check, then (when it holds) the comparison."""

    check: CheckpointCheck
    comparison: Comparison | None = None

    @property
    def ok(self) -> bool:
        return self.check.ok and self.comparison is not None and self.comparison.extends

    @property
    def problem(self) -> str | None:
        if self.check.problems:
            return self.check.problems[0]
        return None if self.comparison is None else self.comparison.problem

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "problem": self.problem, **self.check.checkpoint.summary(),
                "timestamp": self.check.timestamp, "signature_problems": self.check.problems,
                **(self.comparison.as_dict() if self.comparison else {})}


@dataclass
class LedgerCheck:
    """``ledger verify``: the chain and projections, and every checkpoint asked for (or found)."""

    report: VerifyReport
    checkpoints: list[CheckpointVerdict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.report.ok and all(verdict.ok for verdict in self.checkpoints)

    @property
    def problem(self) -> str | None:
        if not self.report.ok:
            return self.report.problem
        return next((verdict.problem for verdict in self.checkpoints if not verdict.ok), None)

    def as_dict(self) -> dict[str, Any]:
        return {**self.report.as_dict(), "ok": self.ok, "problem": self.problem,
                "checkpoints": [verdict.as_dict() for verdict in self.checkpoints]}


@dataclass(frozen=True)
class TakenCheckpoint:
    checkpoint: Checkpoint
    path: Path
    previous: Comparison | None  # how the ledger extends the newest earlier checkpoint, if there was one


def checkpoint_folder(workspace: Workspace) -> Path:
    folder = _in_workspace(workspace, workspace.settings.ledger.checkpoints)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def signing_key(workspace: Workspace) -> Ed25519PrivateKey:
    configured = workspace.settings.ledger.signing_key
    if configured:
        return load_signing_key(_in_workspace(workspace, configured), create=False)
    return load_signing_key(workspace.path("credentials") / KEY_FILE, create=True)


def trusted_tsa_roots(workspace: Workspace) -> list[Certificate] | None:
    roots = workspace.settings.ledger.tsa_roots
    return load_roots(_in_workspace(workspace, roots)) if roots else None


def ledger_origin(workspace: Workspace) -> str:
    """The name checkpoints give the ledger: the configured one, else its URL with any password hidden."""
    return workspace.settings.ledger.origin or make_url(workspace.ledger_url).render_as_string(hide_password=True)


def find_checkpoints(workspace: Workspace) -> list[Checkpoint]:
    """Every checkpoint in the workspace's folder, oldest first."""
    found = [read_checkpoint(path) for path in sorted(checkpoint_folder(workspace).glob("checkpoint-*.json"))]
    return sorted(found, key=lambda checkpoint: (checkpoint.created_at, checkpoint.tree_size))


def ledger_tree(ledger: Ledger) -> MerkleTree:
    return MerkleTree([event_leaf(chain_hash) for chain_hash in ledger.chain_hashes()])


def take_checkpoint(workspace: Workspace) -> TakenCheckpoint:
    """Sign the ledger's tree head (timestamped when a TSA is configured) and write it to the checkpoint folder."""
    earlier = find_checkpoints(workspace)
    with Ledger(workspace.ledger_url) as ledger:
        report = ledger.verify()
        if not report.ok:
            raise CheckpointError(f"refusing to sign a checkpoint: ledger verification failed: {report.problem}")
        tree = ledger_tree(ledger)
    previous = None
    if earlier:
        previous = compare(tree, earlier[-1])
        if not previous.extends:
            raise CheckpointError(f"refusing to sign a checkpoint: the ledger does not extend the newest one, "
                                  f"{previous.problem}")
    checkpoint = sign(make_statement(tree, ledger_origin(workspace), utc_now()), signing_key(workspace))
    url = workspace.settings.ledger.tsa_url
    if url:
        checkpoint = Checkpoint(checkpoint.statement, checkpoint.public_key, checkpoint.signature,
                                request_timestamp(url, checkpoint.signature))
    path = write_checkpoint(checkpoint_folder(workspace), checkpoint)
    return TakenCheckpoint(read_checkpoint(path), path, previous)


def check_ledger(workspace: Workspace, files: list[Path] | None = None,
                 expected_key_id: str | None = None) -> LedgerCheck:
    """Verify the chain and projections, then that the ledger extends each checkpoint (``files``, or all local ones)."""
    checkpoints = [read_checkpoint(path) for path in files] if files else find_checkpoints(workspace)
    roots = trusted_tsa_roots(workspace) if checkpoints else None
    with Ledger(workspace.ledger_url) as ledger:
        result = LedgerCheck(ledger.verify())
        tree = ledger_tree(ledger) if checkpoints else None
    for checkpoint in checkpoints:
        check = check_checkpoint(checkpoint, expected_key_id=expected_key_id, tsa_roots=roots)
        result.checkpoints.append(CheckpointVerdict(check, compare(tree, checkpoint) if check.ok else None))
    return result


def resolve_checkpoint(workspace: Workspace, path: Path | None) -> Checkpoint:
    """The checkpoint named, else the newest in the workspace."""
    if path is not None:
        return read_checkpoint(path)
    found = find_checkpoints(workspace)
    if not found:
        raise CheckpointError("no checkpoint yet: run `soundtrail ledger checkpoint`")
    return found[-1]


def prove_entity(workspace: Workspace, entity_id: str, checkpoint: Checkpoint) -> dict[str, Any]:
    """An inclusion proof for every event of ``entity_id`` (any entity kind) against ``checkpoint``."""
    with Ledger(workspace.ledger_url) as ledger:
        events = ledger.events(entity_id=entity_id)
        tree = _tree_extending(ledger, workspace, checkpoint)
    if not events:
        raise CheckpointError(f"no events for {entity_id!r} in the ledger")
    document = inclusion_proof(tree, checkpoint, entity_id, events)
    if not document["events"]:
        raise CheckpointError(f"every event of {entity_id!r} came after {checkpoint.source}: take a new checkpoint")
    _self_check(document, checkpoint)
    return document


def prove_extension(workspace: Workspace, earlier: Checkpoint, later: Checkpoint) -> dict[str, Any]:
    """A consistency proof that ``later`` extends ``earlier``, both checked against today's ledger."""
    if earlier.tree_size > later.tree_size:
        raise CheckpointError(f"{earlier.source} covers {earlier.tree_size} events, more than {later.source} "
                              f"({later.tree_size}): pass the earlier one to --since")
    with Ledger(workspace.ledger_url) as ledger:
        tree = _tree_extending(ledger, workspace, later)
    comparison = compare(tree, earlier)
    if not comparison.extends:
        raise CheckpointError(f"the ledger does not extend {earlier.source}: {comparison.problem}")
    document = consistency_proof(tree, earlier, later)
    _self_check(document, earlier)
    return document


def _tree_extending(ledger: Ledger, workspace: Workspace, checkpoint: Checkpoint) -> MerkleTree:
    check = check_checkpoint(checkpoint, tsa_roots=trusted_tsa_roots(workspace))
    if not check.ok:
        raise CheckpointError(check.problems[0])
    tree = ledger_tree(ledger)
    comparison = compare(tree, checkpoint)
    if not comparison.extends:
        raise CheckpointError(f"the ledger does not extend {checkpoint.source}, so nothing can be proven against it: "
                              f"{comparison.problem}")
    return tree


def _self_check(document: dict[str, Any], checkpoint: Checkpoint) -> None:
    """A proof is checked as its reader will check it before it leaves; one that fails is a bug, not an output."""
    verdict = verify_proof(document, checkpoint)
    if not verdict.ok:
        raise CheckpointError(f"the proof made does not verify: {verdict.problems[0]}")


def _in_workspace(workspace: Workspace, configured: str) -> Path:
    path = Path(configured).expanduser()
    return path if path.is_absolute() else workspace.root / path
