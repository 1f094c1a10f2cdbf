"""Checkpoints on their own: signed statements, block hashes that locate a divergence, malformed files refused."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from soundtrail.provenance.merkle import MerkleTree, leaf_hash
from soundtrail.provenance.tree_head import (
    MAX_BLOCKS,
    CheckpointError,
    check_checkpoint,
    compare,
    load_signing_key,
    make_statement,
    read_checkpoint,
    sign,
    write_checkpoint,
)


def leaves(n: int, changed: dict[int, bytes] | None = None) -> list[bytes]:
    changed = changed or {}
    return [leaf_hash(changed.get(index, index.to_bytes(4, "big"))) for index in range(n)]


def signed(tree: MerkleTree, folder: Path, key: Ed25519PrivateKey | None = None):
    checkpoint = sign(make_statement(tree, "test ledger", "2026-01-01T00:00:00+00:00"),
                      key or Ed25519PrivateKey.generate())
    return read_checkpoint(write_checkpoint(folder, checkpoint))


def test_blocks_stay_few_and_name_the_first_block_that_differs(tmp_path: Path) -> None:
    checkpoint = signed(MerkleTree(leaves(3000)), tmp_path)
    statement = checkpoint.statement
    assert statement["block_size"] == 4 and len(statement["block_hashes"]) == 750 <= MAX_BLOCKS
    assert check_checkpoint(checkpoint).ok

    assert compare(MerkleTree(leaves(3500)), checkpoint).extends
    changed = compare(MerkleTree(leaves(3500, {1998: b"edited"})), checkpoint)
    assert not changed.extends and changed.problem == (
        f"events 1997-2000 hold the first difference from what {checkpoint.source} covered (events 1-1996 still match)")
    cut = compare(MerkleTree(leaves(2998)), checkpoint)
    assert cut.problem == f"the ledger has 2998 events, {checkpoint.source} covers 3000: events were removed"
    assert compare(MerkleTree([]), checkpoint).problem.startswith("the ledger has 0 events")


def test_small_checkpoints_name_the_event(tmp_path: Path) -> None:
    checkpoint = signed(MerkleTree(leaves(40)), tmp_path)
    assert checkpoint.statement["block_size"] == 1
    comparison = compare(MerkleTree(leaves(45, {16: b"edited"})), checkpoint)
    assert comparison.problem == f"event 17 differs from what {checkpoint.source} covered (events 1-16 still match)"
    extended = compare(MerkleTree(leaves(45)), checkpoint)
    assert extended.extends and extended.beyond == 5 and len(extended.consistency_path) > 0


def test_a_checkpoint_edited_after_signing_or_with_forged_blocks_is_refused(tmp_path: Path) -> None:
    checkpoint = signed(MerkleTree(leaves(10)), tmp_path)
    path = tmp_path / checkpoint.source
    document = json.loads(path.read_text())

    document["statement"]["tree_size"] = 9
    path.write_text(json.dumps(document))
    assert check_checkpoint(read_checkpoint(path)).problems[0].endswith(
        "signature does not verify: the file was altered or not signed by its key")

    # Re-signed by someone else with blocks that do not make the root: caught without any ledger.
    forged = make_statement(MerkleTree(leaves(10)), "test ledger", "2026-01-01T00:00:00+00:00")
    forged["block_hashes"][3] = "00" * 32
    forger = Ed25519PrivateKey.generate()
    check = check_checkpoint(sign(forged, forger))
    assert check.problems == ["the checkpoint: its block hashes do not rebuild its root"]
    assert check_checkpoint(sign(forged, forger), expected_key_id="sha256:" + "0" * 64).problems[0].startswith(
        "the checkpoint is signed by key sha256:")


@pytest.mark.parametrize(("content", "message"), [
    ("not json", "cannot read the checkpoint"),
    ('{"statement": {"format": "other/1"}}', "not a soundtrail ledger checkpoint (format 'other/1')"),
    ('{"statement": {"format": "soundtrail.ledger-checkpoint/1", "tree_size": -1}}', "malformed checkpoint"),
])
def test_malformed_files_are_errors_naming_the_file(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "checkpoint-bad.json"
    path.write_text(content)
    with pytest.raises(CheckpointError, match=re.escape(message)) as caught:
        read_checkpoint(path)
    assert "checkpoint-bad.json" in str(caught.value)


def test_signing_keys_are_made_once_and_must_be_ed25519(tmp_path: Path) -> None:
    key = load_signing_key(tmp_path / "key.pem", create=True)
    assert (tmp_path / "key.pem").stat().st_mode & 0o077 == 0
    again = load_signing_key(tmp_path / "key.pem", create=False)
    assert again.private_bytes_raw() == key.private_bytes_raw()
    (tmp_path / "garbled.pem").write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    with pytest.raises(CheckpointError, match="garbled.pem: cannot read the checkpoint signing key"):
        load_signing_key(tmp_path / "garbled.pem", create=False)
    (tmp_path / "ec.pem").write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(CheckpointError, match="ec.pem: the checkpoint signing key must be an Ed25519 key"):
        load_signing_key(tmp_path / "ec.pem", create=False)
