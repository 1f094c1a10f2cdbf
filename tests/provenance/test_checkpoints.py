"""Signed checkpoints catch what the hash chain alone cannot, on both backends, through the command line.

Each attack below leaves a ledger that `ledger verify` alone calls fine (asserted first: that is the hole),
and that fails against a checkpoint taken before it. Proofs are checked with the database gone.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, delete, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from soundtrail.provenance.ledger import Ledger, event_hash
from soundtrail.provenance.schema import PROJECTIONS, Event
from soundtrail.provenance.takedown import revoke
from tests.conftest import run_cli
from tests.provenance.tsa import local_tsa


def make_workspace(root: Path, ledger_url: str, ledger_section: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "soundtrail.toml").write_text(f'ledger_url = "{ledger_url}"\n{ledger_section}')
    return root


def fill(ledger_url: str, first: int, count: int) -> None:
    with Ledger(ledger_url) as ledger:
        for index in range(first, first + count):
            ledger.record("assets", f"a{index}", {"status": "accepted", "license": "CC0-1.0", "title": f"t{index}"},
                          "asset.ingested")


def take(workspace: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    code, out, err = run_cli(["ledger", "checkpoint", "--workspace", workspace, "--json"], capsys)
    assert code == 0, err
    return Path(json.loads(out)["path"])


def verify(workspace: Path, capsys: pytest.CaptureFixture[str], *checkpoints: Path) -> tuple[int, dict, str]:
    args = ["ledger", "verify", "--workspace", workspace, "--json"]
    for checkpoint in checkpoints:
        args += ["--checkpoint", checkpoint]
    code, out, err = run_cli(args, capsys)
    assert out, err
    return code, json.loads(out), err


def rewrite_from(ledger_url: str, first_seq: int, keep: Callable[[dict[str, Any]], bool]) -> None:
    """Rewrite the ledger from event ``first_seq`` on, keeping the later events ``keep`` passes: the chain
    recomputed with fresh hashes, the projections rebuilt to agree. What whoever holds the database can do."""
    with Ledger(ledger_url) as ledger:
        events = ledger.events()
        state: dict[tuple[str, str], dict[str, Any]] = {}
        for event in events[:first_seq - 1]:
            state.setdefault((event["entity"], event["entity_id"]), {}).update(event["payload"])
        with Session(ledger.engine) as session, session.begin():
            session.execute(delete(Event).where(Event.seq >= first_seq))
            for model in PROJECTIONS.values():
                session.execute(delete(model))
            session.add_all(PROJECTIONS[entity](id=key, **fields) for (entity, key), fields in state.items())
        with ledger.writer() as writer:
            for event in events[first_seq - 1:]:
                if keep(event):
                    writer.record(event["entity"], event["entity_id"], event["payload"], event["kind"])


def execute(ledger_url: str, *statements: str) -> None:
    with Ledger(ledger_url) as ledger, ledger.engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))


def drop_database(ledger_url: str, workspace: Path) -> None:
    """The operator's database is gone: the SQLite file, or the whole PostgreSQL database."""
    url = make_url(ledger_url)
    if url.get_backend_name() == "sqlite":
        Path(url.database).unlink()
        return
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE "{url.database}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def governed(ledger_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, str, Path]:
    """Six assets, a takedown of a1 (events 7 and 8), two more assets (events 9, 10), then a checkpoint."""
    workspace = make_workspace(tmp_path / "ws", ledger_url)
    fill(ledger_url, 0, 6)
    with Ledger(ledger_url) as ledger:
        revoke(ledger, "a1", "rights holder request")
    fill(ledger_url, 6, 2)
    checkpoint = take(workspace, capsys)
    code, report, _ = verify(workspace, capsys, checkpoint)
    assert code == 0 and report["checkpoints"][0]["extends"] and report["events"] == 10
    return workspace, ledger_url, checkpoint


def _tail_cut(url: str) -> None:
    execute(url, "DELETE FROM events WHERE seq > 8", "DELETE FROM assets WHERE id IN ('a6', 'a7')")


def _emptied(url: str) -> None:
    execute(url, *(f"DELETE FROM {table}" for table in ("events", *PROJECTIONS)))


def _takedown_undone(url: str) -> None:
    rewrite_from(url, 7, lambda event: event["kind"] not in ("asset.revoked", "takedown.recorded"))


def _chain_rewritten(url: str) -> None:
    rewrite_from(url, 1, lambda event: True)


@pytest.mark.parametrize(("attack", "expected"), [
    (_tail_cut, "the ledger has 8 events, {name} covers 10: events were removed"),
    (_emptied, "the ledger has 0 events, {name} covers 10: events were removed"),
    (_takedown_undone, "the ledger has 8 events, {name} covers 10: events were removed; "
                       "event 7 differs from what {name} covered (events 1-6 still match)"),
    (_chain_rewritten, "event 1 differs from what {name} covered"),
])
def test_what_the_chain_alone_misses_fails_against_an_earlier_checkpoint(
        governed, capsys: pytest.CaptureFixture[str], attack: Callable[[str], None], expected: str) -> None:
    workspace, url, checkpoint = governed
    attack(url)
    with Ledger(url) as ledger:
        assert ledger.verify().ok, "the chain and projections agree: `ledger verify` alone sees nothing"
    problem = expected.format(name=checkpoint.name)

    code, report, err = verify(workspace, capsys, checkpoint)
    assert code == 1 and not report["ok"]
    assert report["checkpoints"][0]["problem"] == problem
    assert err.strip() == f"error: ledger verification failed: {problem}"
    # Without --checkpoint, the checkpoints in the workspace are checked too.
    code, report, _ = verify(workspace, capsys)
    assert code == 1 and report["problem"] == problem
    # And the operator's own tool will not sign the rewritten history.
    code, _, err = run_cli(["ledger", "checkpoint", "--workspace", workspace], capsys)
    assert code == 1 and f"refusing to sign a checkpoint: the ledger does not extend the newest one, {problem}" in err


def test_a_forged_event_appended_after_the_checkpoint_is_reported_as_beyond_it(
        governed, capsys: pytest.CaptureFixture[str]) -> None:
    """Well formed and chained, the forgery verifies; the checkpoint extends, and says it does not cover it."""
    workspace, url, checkpoint = governed
    with Ledger(url) as ledger:
        ledger.record("assets", "a1", {"status": "accepted", "reason": None}, "asset.reinstated")
        assert ledger.verify().ok
    code, report, _ = verify(workspace, capsys, checkpoint)
    assert code == 0
    assert report["checkpoints"][0]["events_after_checkpoint"] == 1
    assert report["checkpoints"][0]["consistency"]["to_size"] == 11
    code, _, err = run_cli(["ledger", "verify", "--workspace", workspace, "--checkpoint", checkpoint], capsys)
    assert code == 0 and "the 1 events after it are not covered by it" in " ".join(err.split())

    code, out, _ = run_cli(["ledger", "prove", "a1", "--workspace", workspace, "--checkpoint", checkpoint], capsys)
    proof = json.loads(out)
    assert [item["event"]["seq"] for item in proof["events"]] == [2, 7]
    assert proof["after_checkpoint"] == [{"seq": 11, "kind": "asset.reinstated", "entity": "assets"}]


def test_an_inclusion_proof_verifies_with_the_database_gone_and_fails_when_tampered(
        governed, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    workspace, url, checkpoint = governed
    proof_file = tmp_path / "a1.proof.json"
    code, _, err = run_cli(["ledger", "prove", "a1", "--workspace", workspace, "--out", proof_file], capsys)
    assert code == 0, err
    code, _, err = run_cli(["ledger", "prove", "takedowns", "--workspace", workspace], capsys)
    assert code == 1 and err.strip() == "error: no events for 'takedowns' in the ledger"
    drop_database(url, workspace)
    (workspace / "soundtrail.toml").unlink()

    def check(proof: Path, against: Path = checkpoint, *extra: str) -> tuple[int, dict]:
        code, out, _ = run_cli(["ledger", "verify-proof", proof, "--checkpoint", against, "--json", *extra], capsys)
        return code, json.loads(out)

    code, verdict = check(proof_file)
    assert code == 0 and verdict["ok"] and verdict["events_proven"] == [2, 7]
    assert verdict["state"]["assets"]["status"] == "revoked", "the takedown is proven without the ledger"
    key_id = verdict["checkpoint"]["key_id"]
    assert check(proof_file, checkpoint, "--key-id", key_id)[0] == 0

    document = json.loads(proof_file.read_text())
    revoked = document["events"][1]["event"]
    assert revoked["kind"] == "asset.revoked"

    def variant(name: str, change: Callable[[dict], None]) -> Path:
        altered = json.loads(json.dumps(document))
        change(altered)
        path = tmp_path / name
        path.write_text(json.dumps(altered))
        return path

    def edit_payload(proof: dict) -> None:
        proof["events"][1]["event"]["payload"]["status"] = "accepted"

    def forge_consistently(proof: dict) -> None:  # a made-up event with a correct hash of its own
        edit_payload(proof)
        proof["events"][1]["event"]["hash"] = event_hash(proof["events"][1]["event"])

    code, verdict = check(variant("edited.json", edit_payload))
    assert code == 1 and verdict["problems"] == ["event 7's content does not match its hash: it was altered"]
    code, verdict = check(variant("forged.json", forge_consistently))
    assert code == 1 and verdict["problems"] == [
        f"event 7 is not in {checkpoint.name}: its audit path does not lead to the checkpoint's root"]
    code, verdict = check(variant("moved.json", lambda proof: proof["events"][1].update(leaf_index=5)))
    assert code == 1 and verdict["problems"] == ["event 7 is claimed at leaf 5, not its place 6"]

    # The wrong checkpoint, a checkpoint edited after signing, a checkpoint signed by a key the auditor did not keep.
    other = json.loads(checkpoint.read_text())
    other["statement"]["root_hash"] = "00" * 32
    edited = tmp_path / "edited-checkpoint.json"
    edited.write_text(json.dumps(other))
    code, verdict = check(proof_file, edited)
    assert code == 1 and verdict["problems"][0] == (
        "edited-checkpoint.json's signature does not verify: the file was altered or not signed by its key")
    code, verdict = check(proof_file, checkpoint, "--key-id", "sha256:" + "ab" * 32)
    assert code == 1 and verdict["problems"] == [f"{checkpoint.name} is signed by key {key_id}, not the expected "
                                                 f"sha256:{'ab' * 32}"]
    code, out, err = run_cli(["ledger", "verify-proof", proof_file, "--checkpoint", proof_file], capsys)
    assert code == 1 and err.startswith("error: a1.proof.json: malformed checkpoint")


def test_a_later_checkpoint_proves_it_extends_an_earlier_one_without_the_database(
        ledger_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    workspace = make_workspace(tmp_path / "ws", ledger_url)
    empty = take(workspace, capsys)
    fill(ledger_url, 0, 5)
    first = take(workspace, capsys)
    fill(ledger_url, 5, 9)
    second = take(workspace, capsys)
    code, report, _ = verify(workspace, capsys)
    assert code == 0 and [entry["covered_events"] for entry in report["checkpoints"]] == [0, 5, 14]

    proofs = {}
    for earlier in (empty, first):
        proofs[earlier] = tmp_path / f"since-{earlier.stem}.json"
        code, _, err = run_cli(["ledger", "prove", "--since", earlier, "--workspace", workspace, "--out",
                                proofs[earlier]], capsys)
        assert code == 0, err
    code, _, err = run_cli(["ledger", "prove", "--since", second, "--checkpoint", first, "--workspace", workspace],
                           capsys)
    assert code == 1 and "pass the earlier one to --since" in err
    code, _, err = run_cli(["ledger", "prove", "a1", "--since", first, "--workspace", workspace], capsys)
    assert code == 2

    drop_database(ledger_url, workspace)
    for earlier, proof in proofs.items():
        code, out, err = run_cli(["ledger", "verify-proof", proof, "--checkpoint", earlier, "--json"], capsys)
        verdict = json.loads(out)
        assert code == 0, err
        assert verdict["later_checkpoint"]["tree_size"] == 14 and verdict["events_added"] == 14 - earlier_size(earlier)
    # A proof only holds for the checkpoint it was made from.
    code, out, _ = run_cli(["ledger", "verify-proof", proofs[first], "--checkpoint", empty, "--json"], capsys)
    assert code == 1 and json.loads(out)["problems"][0].startswith("the proof is for a checkpoint of 5 events")
    # A later checkpoint whose path was bent does not extend the earlier one.
    bent = json.loads(proofs[first].read_text())
    bent["path"][0] = "00" * 32
    (tmp_path / "bent.json").write_text(json.dumps(bent))
    code, out, _ = run_cli(["ledger", "verify-proof", tmp_path / "bent.json", "--checkpoint", first, "--json"], capsys)
    assert code == 1 and json.loads(out)["problems"] == [
        f"the later checkpoint (14 events) does not extend {first.name} (5 events): the consistency proof fails"]


def earlier_size(path: Path) -> int:
    return json.loads(path.read_text())["statement"]["tree_size"]


def test_timestamped_checkpoints_and_a_configured_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With [ledger] tsa_url a checkpoint carries a real TSA's token; with signing_key it is signed by that key."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    fill(url, 0, 3)
    with local_tsa() as tsa:
        key_run = make_workspace(tmp_path / "keyed", url)
        take(key_run, capsys)  # makes credentials/ledger-checkpoint-key.pem, which the next workspace names
        key_path = key_run / "credentials" / "ledger-checkpoint-key.pem"
        assert key_path.stat().st_mode & 0o077 == 0, "the private key is the owner's alone"
        roots = tmp_path / "tsa-roots.pem"  # what the auditor trusts outlives the TSA's own folder
        roots.write_bytes(tsa.root_pem.read_bytes())
        workspace = make_workspace(tmp_path / "ws", url, f'[ledger]\nsigning_key = "{key_path}"\n'
                                                         f'tsa_url = "{tsa.url}"\ntsa_roots = "{roots}"\n')
        code, out, err = run_cli(["ledger", "checkpoint", "--workspace", workspace, "--json"], capsys)
        assert code == 0, err
        taken = json.loads(out)
    assert len(tsa.requests) == 1 and taken["timestamp"]["authority"] == tsa.url
    assert taken["key_id"] == json.loads(next((key_run / "reports" / "checkpoints").glob("*.json")).read_text())[
        "key_id"]
    checkpoint = Path(taken["path"])
    code, report, _ = verify(workspace, capsys, checkpoint)
    assert code == 0 and report["checkpoints"][0]["timestamp"]["trusted"]

    document = json.loads(checkpoint.read_text())
    token = bytearray(base64.b64decode(document["timestamp"]["token"]))
    token[-5] ^= 0xFF  # inside the TSA's signature
    document["timestamp"]["token"] = base64.b64encode(bytes(token)).decode()
    checkpoint.write_text(json.dumps(document))
    code, report, _ = verify(workspace, capsys, checkpoint)
    assert code == 1 and "timestamp" in report["problem"]

    (workspace / "soundtrail.toml").write_text(f'ledger_url = "{url}"\n[ledger]\nsigning_key = "missing.pem"\n')
    code, _, err = run_cli(["ledger", "checkpoint", "--workspace", workspace], capsys)
    assert code == 1 and err.strip() == f"error: {workspace / 'missing.pem'}: no such signing key"
    (workspace / "soundtrail.toml").write_text(f'ledger_url = "{url}"\n[ledger]\nsigning_kee = "typo.pem"\n')
    code, _, err = run_cli(["ledger", "checkpoint", "--workspace", workspace], capsys)
    assert code == 1 and "ledger.signing_kee: unknown key" in err
