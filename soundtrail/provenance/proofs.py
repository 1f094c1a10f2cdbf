"""Proofs that need only a checkpoint to check: events are in the ledger, a later checkpoint extends an earlier one.

Inclusion proof (``soundtrail ledger prove ID``), one JSON object::

    {"format": "soundtrail.ledger-inclusion-proof/1", "entity_id": ID,
     "checkpoint": {"tree_size": n, "root_hash": <hex>, "key_id": ..., "created_at": ...},
     "events": [{"leaf_index": seq - 1, "audit_path": [<hex>, ...],
                 "event": {"seq", "kind", "entity", "entity_id", "payload", "run_id", "created_at",
                           "prev_hash", "hash"}}, ...],
     "after_checkpoint": [{"seq", "kind", "entity"}, ...]}

Checked by hand, or by ``soundtrail ledger verify-proof``: for each event, the SHA-256 of the canonical
JSON (sorted keys, no spaces, UTF-8) of its fields other than ``hash`` must be ``hash``; its leaf is
SHA-256(0x00 || hash as 32 bytes); RFC 9162's algorithm 2.1.3.2 must take that leaf at ``leaf_index``
along ``audit_path`` to the checkpoint's root for its tree size; and the checkpoint's signature must
verify. Events of the entity appended after the checkpoint are listed, not proven: the checkpoint
cannot speak for them.

An inclusion proof shows that each event listed is in the ledger the checkpoint signed, at its place.
It does not show that the list is complete: a later event of the same entity (a takedown, say) left out
of the proof is not missed by it. An auditor who must know the latest state of an entity checks the
ledger itself against the checkpoint (``ledger verify --checkpoint``).

Consistency proof (``soundtrail ledger prove --since OLD``)::

    {"format": "soundtrail.ledger-consistency-proof/1",
     "from": {"tree_size": m, "root_hash": <hex>, "key_id": ...},
     "to": <the later checkpoint, whole>, "path": [<hex>, ...]}

RFC 9162's algorithm 2.1.4.2 on ``path`` must lead from the earlier root to the later one: whoever
kept the earlier checkpoint learns that the later one covers the same events and more, without the ledger.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.x509 import Certificate

from soundtrail.provenance.ledger import event_hash
from soundtrail.provenance.merkle import MerkleTree, verify_consistency, verify_inclusion
from soundtrail.provenance.tree_head import (
    Checkpoint,
    CheckpointError,
    check_checkpoint,
    checkpoint_from_document,
    event_leaf,
)

INCLUSION_FORMAT = "soundtrail.ledger-inclusion-proof/1"
CONSISTENCY_FORMAT = "soundtrail.ledger-consistency-proof/1"


@dataclass
class ProofCheck:
    """The verdict on a proof: ``problems`` empty when it holds; ``facts`` what it established."""

    kind: str
    problems: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "kind": self.kind, "problems": self.problems, **self.facts}


def inclusion_proof(tree: MerkleTree, checkpoint: Checkpoint, entity_id: str,
                    events: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The proof document for ``events`` (those of ``entity_id``, in sequence order) against ``checkpoint``."""
    covered = checkpoint.tree_size
    return {
        "format": INCLUSION_FORMAT,
        "entity_id": entity_id,
        "checkpoint": _reference(checkpoint) | {"created_at": checkpoint.created_at},
        "events": [{"leaf_index": event["seq"] - 1, "event": event,
                    "audit_path": [node.hex() for node in tree.inclusion_path(event["seq"] - 1, covered)]}
                   for event in events if event["seq"] <= covered],
        "after_checkpoint": [{"seq": event["seq"], "kind": event["kind"], "entity": event["entity"]}
                             for event in events if event["seq"] > covered],
    }


def consistency_proof(tree: MerkleTree, earlier: Checkpoint, later: Checkpoint) -> dict[str, Any]:
    """The proof document that ``later`` extends ``earlier`` (both must be prefixes of ``tree``)."""
    return {"format": CONSISTENCY_FORMAT, "from": _reference(earlier), "to": later.document(),
            "path": [node.hex() for node in tree.consistency_path(earlier.tree_size, later.tree_size)]}


def verify_proof(document: Any, checkpoint: Checkpoint, *, expected_key_id: str | None = None,
                 tsa_roots: Sequence[Certificate] | None = None) -> ProofCheck:
    """Check an inclusion or consistency proof against ``checkpoint`` (the earlier one, for consistency)."""
    kind = document.get("format") if isinstance(document, dict) else None
    if kind not in (INCLUSION_FORMAT, CONSISTENCY_FORMAT):
        return ProofCheck("unknown", [f"not a soundtrail ledger proof (format {kind!r})"])
    head = check_checkpoint(checkpoint, expected_key_id=expected_key_id, tsa_roots=tsa_roots)
    facts: dict[str, Any] = {"checkpoint": checkpoint.summary(), "timestamp": head.timestamp}
    try:
        if kind == INCLUSION_FORMAT:
            check = _verify_inclusion(document, checkpoint)
        else:
            check = _verify_consistency(document, checkpoint, tsa_roots)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        check = ProofCheck(kind, [f"malformed proof ({type(exc).__name__}: {exc})"])
    check.problems[:0] = head.problems
    check.facts = facts | check.facts
    return check


def _verify_inclusion(document: dict[str, Any], checkpoint: Checkpoint) -> ProofCheck:
    check = ProofCheck("inclusion")
    problem = _reference_problem(document["checkpoint"], checkpoint)
    if problem:
        return ProofCheck("inclusion", [problem])
    entity_id, size, root = document["entity_id"], checkpoint.tree_size, checkpoint.root
    state: dict[str, dict[str, Any]] = {}
    proven: list[int] = []
    if not document["events"]:
        check.problems.append(f"the proof holds no event of {entity_id!r} covered by {checkpoint.source}")
    for item in document["events"]:
        event, index = item["event"], item["leaf_index"]
        seq = event["seq"]
        if event["entity_id"] != entity_id:
            check.problems.append(f"event {seq} is about {event['entity_id']!r}, not {entity_id!r}")
        elif event_hash(event) != event["hash"]:
            check.problems.append(f"event {seq}'s content does not match its hash: it was altered")
        elif index != seq - 1:
            check.problems.append(f"event {seq} is claimed at leaf {index}, not its place {seq - 1}")
        elif not verify_inclusion(event_leaf(event["hash"]), index, size,
                                  [bytes.fromhex(node) for node in item["audit_path"]], root):
            check.problems.append(f"event {seq} is not in {checkpoint.source}: its audit path does not lead "
                                  "to the checkpoint's root")
        else:
            proven.append(seq)
            state.setdefault(event["entity"], {}).update(event["payload"])
    check.facts = {"entity_id": entity_id, "events_proven": proven, "state": state,
                   "after_checkpoint": document["after_checkpoint"]}
    return check


def _verify_consistency(document: dict[str, Any], earlier: Checkpoint,
                        tsa_roots: Sequence[Certificate] | None) -> ProofCheck:
    problem = _reference_problem(document["from"], earlier)
    if problem:
        return ProofCheck("consistency", [problem])
    try:
        later = checkpoint_from_document(document["to"], "the later checkpoint in the proof")
    except CheckpointError as exc:
        return ProofCheck("consistency", [str(exc)])
    check = ProofCheck("consistency", check_checkpoint(later, expected_key_id=earlier.key_id,
                                                       tsa_roots=tsa_roots).problems)
    path = [bytes.fromhex(node) for node in document["path"]]
    if not verify_consistency(earlier.tree_size, later.tree_size, earlier.root, later.root, path):
        check.problems.append(f"the later checkpoint ({later.tree_size} events) does not extend {earlier.source} "
                              f"({earlier.tree_size} events): the consistency proof fails")
    check.facts = {"later_checkpoint": later.summary(),
                   "events_added": later.tree_size - earlier.tree_size}
    return check


def _reference(checkpoint: Checkpoint) -> dict[str, Any]:
    return {"tree_size": checkpoint.tree_size, "root_hash": checkpoint.root.hex(), "key_id": checkpoint.key_id}


def _reference_problem(reference: dict[str, Any], checkpoint: Checkpoint) -> str | None:
    if reference["tree_size"] != checkpoint.tree_size or reference["root_hash"] != checkpoint.root.hex():
        return (f"the proof is for a checkpoint of {reference['tree_size']} events with root "
                f"{reference['root_hash'][:16]}..., not {checkpoint.source} ({checkpoint.tree_size} events, root "
                f"{checkpoint.root.hex()[:16]}...)")
    return None
