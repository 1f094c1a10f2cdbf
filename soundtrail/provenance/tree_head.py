"""Signed checkpoints of the ledger: a Merkle tree head (size and root) that its operator signs and others keep.

The hash chain shows a record edited in place, but whoever holds the database can recompute the chain
after an edit, cut its tail or empty it, and it still verifies. A checkpoint taken earlier and kept
elsewhere cannot be recomputed: a rewritten, cut or emptied ledger no longer extends it.

The tree (:mod:`soundtrail.provenance.merkle`, RFC 6962) has one leaf per event, in sequence order::

    leaf i = SHA-256(0x00 || H_i)     H_i = the event's chain hash as 32 bytes (the ``hash`` column)

The chain hash already commits to every field of the event (seq, kind, entity, id, payload, run,
time, previous hash) through the ledger's canonical JSON, so the tree is built from one narrow column
rather than from re-serialised payloads, and an inclusion proof carries the event's fields so that
its verifier recomputes H_i itself.

A checkpoint file (JSON)::

    {"statement": {"format": "soundtrail.ledger-checkpoint/1", "origin": <which ledger>,
                   "tree_size": n, "root_hash": <hex>, "created_at": <ISO-8601 UTC>,
                   "block_size": b, "block_hashes": [<hex>, ...]},
     "public_key": <base64 Ed25519 raw key>, "key_id": "sha256:<hex of the raw key>",
     "signature": <base64 Ed25519 signature of the statement's canonical JSON>,
     "timestamp": null | {"authority": <TSA URL>, "time": <ISO-8601>, "token": <base64 DER TimeStampResp>}}

``block_hashes`` are the tree's nodes over leaves [j*b, (j+1)*b) (the last block may be shorter), with b
the smallest power of two that keeps them to at most 1,024; they rebuild the root, so they are as
trustworthy as the signed root. They let a check name where a ledger diverges: the first event that
differs when b is 1, the first block of b events otherwise. The timestamp token stamps the signature
bytes (see :mod:`soundtrail.provenance.timestamp`).

A checkpoint proves extension, not truth: that today's ledger starts with exactly the events the
checkpoint covered. It says nothing about whether those events were true when written, nor about events
appended after it (a forged event appended later is simply beyond it), and its signature is only as
good as the key: an auditor keeps the checkpoint files and the key id outside the operator's reach.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509 import Certificate

from soundtrail.atomic import atomic_write_bytes, atomic_write_text
from soundtrail.provenance.ledger import canonical_json
from soundtrail.provenance.merkle import HASH_SIZE, MerkleTree, leaf_hash, root_from_level, verify_consistency
from soundtrail.provenance.timestamp import Timestamp, check_timestamp

FORMAT = "soundtrail.ledger-checkpoint/1"
MAX_BLOCKS = 1024


class CheckpointError(ValueError):
    """A checkpoint file or signing key that cannot be read or used; the message names the file."""


def event_leaf(chain_hash: str) -> bytes:
    """The Merkle leaf hash of one event, from its chain hash (hex)."""
    return leaf_hash(bytes.fromhex(chain_hash))


def key_id(public_key: bytes) -> str:
    """A short, stable name for a raw Ed25519 public key: what an auditor writes down and pins."""
    return "sha256:" + hashlib.sha256(public_key).hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    """One signed tree head, as read from or written to a file."""

    statement: dict[str, Any]
    public_key: bytes
    signature: bytes
    timestamp: Timestamp | None = None
    source: str = "the checkpoint"  # how messages name it: its file name once written or read

    @property
    def tree_size(self) -> int:
        return int(self.statement["tree_size"])

    @property
    def root(self) -> bytes:
        return bytes.fromhex(self.statement["root_hash"])

    @property
    def created_at(self) -> str:
        return str(self.statement["created_at"])

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    def statement_bytes(self) -> bytes:
        return canonical_json(self.statement).encode("utf-8")

    def document(self) -> dict[str, Any]:
        stamp = None if self.timestamp is None else {
            "authority": self.timestamp.authority, "time": self.timestamp.time,
            "token": base64.b64encode(self.timestamp.token).decode("ascii")}
        return {"statement": self.statement, "public_key": base64.b64encode(self.public_key).decode("ascii"),
                "key_id": self.key_id, "signature": base64.b64encode(self.signature).decode("ascii"),
                "timestamp": stamp}

    def summary(self) -> dict[str, Any]:
        """What a report says about the checkpoint: enough to find it and recognise its signer."""
        return {"file": self.source, "tree_size": self.tree_size, "root_hash": self.statement["root_hash"],
                "created_at": self.created_at, "origin": self.statement["origin"], "key_id": self.key_id}


@dataclass
class CheckpointCheck:
    """A checkpoint file judged on its own: signature, key, blocks against the root, timestamp."""

    checkpoint: Checkpoint
    problems: list[str] = field(default_factory=list)
    timestamp: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class Comparison:
    """A ledger's tree against a checkpoint: extended (with the consistency proof) or where they part."""

    checkpoint: Checkpoint
    ledger_size: int
    extends: bool
    problem: str | None = None
    consistency_path: list[str] = field(default_factory=list)
    ledger_root: str = ""

    @property
    def beyond(self) -> int:
        """Events appended after the checkpoint: it says nothing about them."""
        return max(self.ledger_size - self.checkpoint.tree_size, 0) if self.extends else 0

    def as_dict(self) -> dict[str, Any]:
        return {"extends": self.extends, "problem": self.problem, "ledger_events": self.ledger_size,
                "covered_events": self.checkpoint.tree_size, "events_after_checkpoint": self.beyond,
                "consistency": None if not self.extends else {
                    "from_size": self.checkpoint.tree_size, "to_size": self.ledger_size,
                    "to_root": self.ledger_root, "path": self.consistency_path}}


def make_statement(tree: MerkleTree, origin: str, created_at: str) -> dict[str, Any]:
    """The statement a checkpoint signs for the whole of ``tree``."""
    block = block_size_for(tree.size)
    blocks = [tree.subtree(start, min(start + block, tree.size)).hex() for start in range(0, tree.size, block)]
    return {"format": FORMAT, "origin": origin, "tree_size": tree.size, "root_hash": tree.root().hex(),
            "created_at": created_at, "block_size": block, "block_hashes": blocks}


def block_size_for(tree_size: int) -> int:
    block = 1
    while math.ceil(tree_size / block) > MAX_BLOCKS:
        block *= 2
    return block


def sign(statement: dict[str, Any], key: Ed25519PrivateKey) -> Checkpoint:
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    unsigned = Checkpoint(statement, public, b"")
    return Checkpoint(statement, public, key.sign(unsigned.statement_bytes()))


def load_signing_key(path: Path, *, create: bool) -> Ed25519PrivateKey:
    """The Ed25519 key in ``path`` (PEM, unencrypted); made there, owner-readable only, when ``create`` and absent."""
    path = Path(path)
    if not path.exists():
        if not create:
            raise CheckpointError(f"{path}: no such signing key")
        key = Ed25519PrivateKey.generate()
        atomic_write_bytes(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()), mode=0o600)  # never group-readable
        return key
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: cannot read the checkpoint signing key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise CheckpointError(f"{path}: the checkpoint signing key must be an Ed25519 key")
    return key


def write_checkpoint(folder: Path, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` to a new file in ``folder``, named by its size and time so that names sort in order."""
    stamp = checkpoint.created_at.replace("-", "").replace(":", "").replace("+0000", "Z")
    path = Path(folder) / f"checkpoint-{checkpoint.tree_size:09d}-{stamp}.json"
    atomic_write_text(path, json.dumps(checkpoint.document(), indent=1) + "\n")
    return path


def read_checkpoint(path: Path) -> Checkpoint:
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot read the checkpoint: {exc}") from exc
    return checkpoint_from_document(document, path.name)


def checkpoint_from_document(document: Any, source: str) -> Checkpoint:
    """A :class:`Checkpoint` from its JSON form; a malformed one is a :class:`CheckpointError` naming ``source``."""
    try:
        statement = document["statement"]
        if statement["format"] != FORMAT:
            raise CheckpointError(f"{source}: not a soundtrail ledger checkpoint (format {statement['format']!r})")
        if not isinstance(statement["tree_size"], int) or statement["tree_size"] < 0:
            raise ValueError(f"tree_size {statement['tree_size']!r} is not a count of events")
        if len(bytes.fromhex(statement["root_hash"])) != HASH_SIZE:
            raise ValueError("root_hash is not a SHA-256 hash")
        stamp = document.get("timestamp")
        timestamp = None if stamp is None else Timestamp(stamp["authority"], stamp["time"],
                                                         base64.b64decode(stamp["token"], validate=True))
        return Checkpoint(statement, base64.b64decode(document["public_key"], validate=True),
                          base64.b64decode(document["signature"], validate=True), timestamp, source)
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: malformed checkpoint ({type(exc).__name__}: {exc})") from exc


def check_checkpoint(checkpoint: Checkpoint, *, expected_key_id: str | None = None,
                     tsa_roots: Sequence[Certificate] | None = None) -> CheckpointCheck:
    """Everything a checkpoint proves about itself, without any ledger."""
    check = CheckpointCheck(checkpoint)
    name = checkpoint.source
    if expected_key_id is not None and checkpoint.key_id != expected_key_id:
        check.problems.append(f"{name} is signed by key {checkpoint.key_id}, not the expected {expected_key_id}")
    try:
        Ed25519PublicKey.from_public_bytes(checkpoint.public_key).verify(checkpoint.signature,
                                                                         checkpoint.statement_bytes())
    except (InvalidSignature, ValueError):
        check.problems.append(f"{name}'s signature does not verify: the file was altered or not signed by its key")
    problem = _blocks_problem(checkpoint)
    if problem:
        check.problems.append(f"{name}: {problem}")
    if checkpoint.timestamp is not None:
        stamp = check_timestamp(checkpoint.timestamp.token, checkpoint.signature, tsa_roots)
        check.timestamp = {"authority": checkpoint.timestamp.authority, "time": stamp.time, "trusted": stamp.trusted,
                           "problem": stamp.problem}
        if stamp.problem:
            check.problems.append(f"{name}: {stamp.problem}")
    return check


def _blocks_problem(checkpoint: Checkpoint) -> str | None:
    statement = checkpoint.statement
    try:
        size, block = int(statement["tree_size"]), int(statement["block_size"])
        blocks = [bytes.fromhex(value) for value in statement["block_hashes"]]
    except (KeyError, TypeError, ValueError) as exc:
        return f"malformed block hashes ({exc})"
    if block < 1 or block & (block - 1) or len(blocks) != math.ceil(size / block):
        return f"{len(blocks)} blocks of {block} events cannot cover {size} events"
    if root_from_level(blocks) != checkpoint.root:
        return "its block hashes do not rebuild its root"
    return None


def compare(tree: MerkleTree, checkpoint: Checkpoint) -> Comparison:
    """Does the ledger whose tree is ``tree`` extend ``checkpoint``? If not, name where they part.

    ``checkpoint`` must have passed :func:`check_checkpoint` (its blocks rebuild its root).
    """
    covered, size, name = checkpoint.tree_size, tree.size, checkpoint.source
    if covered <= size and tree.root(covered) == checkpoint.root:
        path = tree.consistency_path(covered)
        if not verify_consistency(covered, size, checkpoint.root, tree.root(), path):  # the generator's own check
            raise AssertionError(f"consistency proof from {covered} to {size} does not verify")
        return Comparison(checkpoint, size, True, consistency_path=[node.hex() for node in path],
                          ledger_root=tree.root().hex())
    first = _first_differing_block(tree, checkpoint)
    where = ""
    if first is not None:
        start, end = first
        kept = f" (events 1-{start} still match)" if start else ""
        where = (f"event {end} differs from what {name} covered{kept}" if end - start == 1 else
                 f"events {start + 1}-{end} hold the first difference from what {name} covered{kept}")
    if size < covered:
        removed = f"the ledger has {size} events, {name} covers {covered}: events were removed"
        problem = f"{removed}; {where}" if where else removed
    else:
        problem = where or f"the ledger's first {covered} events do not hash to {name}'s root"
    return Comparison(checkpoint, size, False, problem, ledger_root=tree.root().hex())


def _first_differing_block(tree: MerkleTree, checkpoint: Checkpoint) -> tuple[int, int] | None:
    """The leaf range [start, end) of the checkpoint's first block that the ledger no longer has as it was."""
    block = int(checkpoint.statement["block_size"])
    for index, expected in enumerate(checkpoint.statement["block_hashes"]):
        start, end = index * block, min((index + 1) * block, checkpoint.tree_size)
        if end > tree.size:
            return None
        if tree.subtree(start, end).hex() != expected:
            return start, end
    return None
