"""The ledger's hash chain, idempotent upserts, tamper detection and concurrent writers."""

from __future__ import annotations

import multiprocessing
import re
import threading

import pytest
from sqlalchemy import event, text

from soundtrail.provenance.ledger import GENESIS, Ledger, LedgerError, ProjectionMismatch, event_hash


def _fill(ledger: Ledger) -> None:
    with ledger.writer(run_id="run-1") as writer:
        writer.record("assets", "a1", {"status": "accepted", "license": "CC0-1.0", "duration_s": 3.5}, "asset.ingested")
        writer.record("assets", "a2", {"status": "accepted", "license": "CC-BY-4.0", "tags": ["x", "y"]},
                      "asset.ingested")
        writer.record("licences", "CC0-1.0", {"name": "CC0 1.0", "policy": "allow"}, "licence.seen")
    ledger.record("assets", "a2", {"status": "revoked", "reason": "takedown"}, "asset.revoked")


def test_chain_links_and_projection(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    _fill(ledger)
    events = ledger.events()
    assert [e["seq"] for e in events] == [1, 2, 3, 4]
    assert events[0]["prev_hash"] == GENESIS
    for earlier, later in zip(events, events[1:], strict=False):
        assert later["prev_hash"] == earlier["hash"]
        assert event_hash(later) == later["hash"]
    assert ledger.get("assets", "a2")["status"] == "revoked"
    assert ledger.get("assets", "a2")["tags"] == ["x", "y"]
    assert [row["id"] for row in ledger.rows("assets", status="accepted")] == ["a1"]
    report = ledger.verify()
    assert report.ok, report.problem
    assert report.events == 4 and report.rows == 3


def test_same_facts_twice_append_nothing(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    assert ledger.record("assets", "a1", {"status": "accepted", "duration_s": 1.0}, "asset.ingested")
    head = ledger.head()
    assert not ledger.record("assets", "a1", {"status": "accepted", "duration_s": 1.0}, "asset.ingested")
    assert ledger.head() == head
    # A partial patch only carries the changed field.
    assert ledger.record("assets", "a1", {"status": "accepted", "duration_s": 2.0}, "asset.updated")
    assert ledger.events()[-1]["payload"] == {"duration_s": 2.0}


def test_prefetched_rows_are_read_and_written_without_further_queries(ledger_url: str) -> None:
    """A batch looks its rows up in one query; the writes go out together at commit, and land."""
    ledger = Ledger(ledger_url)
    _fill(ledger)
    statements: list[str] = []
    event.listen(ledger.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    with ledger.writer(run_id="run-2") as writer:
        writer.prefetch("assets", ["a1", "a2", "a3", "a4"])
        before = len(statements)
        assert writer.get("assets", "a1")["license"] == "CC0-1.0"
        assert writer.get("assets", "a3") is None
        assert writer.record("assets", "a3", {"status": "accepted", "license": "CC0-1.0"}, "asset.ingested")
        assert writer.get("assets", "a3")["status"] == "accepted", "a row reads back inside its transaction"
        assert not writer.record("assets", "a2", {"status": "revoked"}, "asset.revoked"), "an unchanged fact"
        assert len(statements) == before, statements[before:]
    assert ledger.get("assets", "a3")["license"] == "CC0-1.0"
    assert ledger.verify().ok


def test_unknown_entity_and_column_are_errors(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    with pytest.raises(LedgerError, match="unknown ledger entity"):
        ledger.record("nope", "x", {}, "k")
    with pytest.raises(LedgerError, match="no column"):
        ledger.record("assets", "x", {"colour": "red"}, "k")
    assert ledger.head()[0] == 0, "a failed write must leave nothing behind"


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        ("UPDATE events SET payload = '{\"license\":\"CC-BY-NC-4.0\"}' WHERE seq = 2", "event 2 was changed"),
        ("DELETE FROM events WHERE seq = 2", "event 2 is missing"),
        # Flip the first hex digit: writing a fixed 'f' would change nothing for the 1 in 16 hashes starting with 'f'.
        ("UPDATE events SET prev_hash = CASE WHEN substr(prev_hash, 1, 1) = 'f' THEN '0' ELSE 'f' END"
         " || substr(prev_hash, 2) WHERE seq = 3", "event 3 does not link"),
        ("UPDATE assets SET license = 'CC-BY-NC-4.0' WHERE id = 'a1'", "assets row 'a1' column 'license'"),
        ("DELETE FROM licences WHERE id = 'CC0-1.0'", "licences row 'CC0-1.0' recorded in the chain is missing"),
        ("INSERT INTO assets (id, status) VALUES ('a9', 'accepted')", "assets row 'a9' has no event"),
    ],
)
def test_verify_names_the_first_bad_record(ledger_url: str, tamper: str, expected: str) -> None:
    ledger = Ledger(ledger_url)
    _fill(ledger)
    with ledger.engine.connect() as connection:
        connection.execute(text(tamper))
        connection.commit()
    report = ledger.verify()
    assert not report.ok
    assert expected in report.problem


def _tamper(ledger: Ledger, statement: str) -> None:
    with ledger.engine.connect() as connection:
        connection.execute(text(statement))
        connection.commit()


def test_verified_rows_agree_with_rows_on_an_untouched_ledger(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    _fill(ledger)
    assert ledger.verified_rows("assets", status="accepted") == ledger.rows("assets", status="accepted")
    assert [row["id"] for row in ledger.verified_rows("assets", ids=["a2", "a1", "nope"])] == ["a1", "a2"]
    assert ledger.verified_rows("assets", ids=[]) == []


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        # A quarantined, NC asset relabelled accepted in the table: the chain says otherwise.
        ("UPDATE assets SET status = 'accepted' WHERE id = 'a2'",
         "assets row 'a2' column 'status' is 'accepted' but the chain says 'revoked'"),
        ("INSERT INTO assets (id, status) VALUES ('a9', 'accepted')", "assets row 'a9' has no event in the chain"),
        # Both the revoking event and the row edited, the event's hash left as it was.
        ("UPDATE events SET payload = '{\"status\":\"accepted\"}' WHERE seq = 4;"
         " UPDATE assets SET status = 'accepted', reason = NULL WHERE id = 'a2'", "event 4 (assets 'a2') was changed"),
    ],
)
def test_verified_rows_refuse_a_row_its_events_disagree_with(ledger_url: str, tamper: str, expected: str) -> None:
    ledger = Ledger(ledger_url)
    _fill(ledger)
    for statement in tamper.split(";"):
        _tamper(ledger, statement)
    for query in ({"status": "accepted"}, {"ids": ["a1", "a2", "a9"]}):
        with pytest.raises(ProjectionMismatch, match=re.escape(expected)):
            ledger.verified_rows("assets", **query)
    assert ledger.verified_rows("assets", ids=["a1"])[0]["license"] == "CC0-1.0", "untouched rows still read"


def test_verified_rows_by_id_see_a_row_deleted_from_the_table(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    _fill(ledger)
    _tamper(ledger, "DELETE FROM assets WHERE id = 'a2'")
    assert [row["id"] for row in ledger.verified_rows("assets", status="accepted")] == ["a1"]
    with pytest.raises(ProjectionMismatch, match="assets row 'a2' recorded in the chain is missing"):
        ledger.verified_rows("assets", ids=["a1", "a2"])


def test_reordered_events_are_caught(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    _fill(ledger)
    with ledger.engine.connect() as connection:
        connection.execute(text("UPDATE events SET seq = 100 WHERE seq = 2"))
        connection.execute(text("UPDATE events SET seq = 2 WHERE seq = 3"))
        connection.execute(text("UPDATE events SET seq = 3 WHERE seq = 100"))
        connection.commit()
    report = ledger.verify()
    assert not report.ok and report.first_bad_seq == 2


def _append_many(url: str, worker: int, count: int) -> None:
    ledger = Ledger(url)
    for index in range(count):
        with ledger.writer(run_id=f"w{worker}") as writer:
            writer.record("assets", f"w{worker}-{index}", {"status": "accepted", "duration_s": float(index)},
                          "asset.ingested")
    ledger.close()


def test_concurrent_writers_keep_one_chain(ledger_url: str) -> None:
    Ledger(ledger_url).close()  # create the tables once before the writers race
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(ledger_url, w, 25)) for w in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(120)
        assert process.exitcode == 0
    ledger = Ledger(ledger_url)
    report = ledger.verify()
    assert report.ok, report.problem
    assert report.events == 100 and len(ledger.rows("assets")) == 100


def test_a_read_does_not_wait_for_a_writer_on_sqlite(tmp_path) -> None:
    """WAL lets a reader see the last commit while a writer holds the lock (`assets list` during an ingest)."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    writer_side, reader_side = Ledger(url), Ledger(url)
    writer_side.record("assets", "a1", {"status": "accepted"}, "asset.ingested")
    seen: list[list[str]] = []
    done = threading.Event()

    def read() -> None:
        seen.append([row["id"] for row in reader_side.rows("assets")])
        seen.append([row["seq"] for row in reader_side.events()])
        reader_side.verify()
        done.set()

    with writer_side.writer() as writer:
        writer.record("assets", "a2", {"status": "accepted"}, "asset.ingested")
        reader = threading.Thread(target=read)
        reader.start()
        # A reader that waited for the lock would wait for this transaction, which waits for the reader: the
        # timeout only breaks that deadlock, it measures nothing.
        finished_while_locked = done.wait(timeout=60)
    reader.join()
    assert finished_while_locked, "a read waited for the writer's lock"
    assert seen == [["a1"], [1]], "the reader saw the last committed state"


def test_a_ledger_from_before_a_new_column_gains_it_and_still_verifies(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    _fill(ledger)
    with ledger.engine.begin() as connection:
        connection.execute(text("ALTER TABLE assets DROP COLUMN mtime_ns"))
    ledger.close()
    upgraded = Ledger(ledger_url)
    assert upgraded.get("assets", "a1")["mtime_ns"] is None
    assert upgraded.record("assets", "a1", {"mtime_ns": 1_700_000_000_123_456_789}, "asset.seen")
    assert upgraded.get("assets", "a1")["mtime_ns"] == 1_700_000_000_123_456_789, "a 64-bit column"
    assert upgraded.verify().ok
