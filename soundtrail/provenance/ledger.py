"""The ledger: an append-only, hash-chained event log with SQL projections beside it.

Writes go through :meth:`Ledger.writer`, a transaction that holds the ledger's write lock
(SQLite ``BEGIN IMMEDIATE``; a PostgreSQL transaction-scoped advisory lock), so several Ray
workers or processes appending at once still produce one unbroken chain. Reads take no lock:
SQLite's WAL journal gives a reader the last committed state while a writer works, so
``assets list`` or an audit never waits behind a long ingest transaction. A write that would
not change the projected row appends nothing: recording the same facts twice leaves the
ledger as it was, which is what makes every stage idempotent.

Chain rule: ``event.hash = sha256(canonical_json({seq, kind, entity, entity_id, payload,
run_id, created_at, prev_hash}))`` with ``prev_hash`` the previous event's hash (64 zeros for
the first). :meth:`Ledger.verify` recomputes it and replays the payloads to check that every
projection row still says what the chain says. Stages that decide what may be trained on read
through :meth:`Ledger.verified_rows`, which replays just the events of the rows it returns, so a
row edited behind the chain's back is refused where it would be used, not only at the next audit.

The chain shows a record changed in place; it cannot show a chain recomputed from some point on,
cut short or emptied. Signed checkpoints of a Merkle tree over the chain hashes do
(:mod:`soundtrail.provenance.checkpoints`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import create_engine, event, inspect, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import Select

from soundtrail.provenance.schema import PROJECTIONS, Base, Event, Projection

GENESIS = "0" * 64
_ADVISORY_LOCK_KEY = 0x50_0D_7A_11
_WRITE = "soundtrail_ledger_write"  # connection execution option: this transaction appends (takes the lock)
_IDS_PER_QUERY = 500  # bound parameters per IN list: far under SQLite's and PostgreSQL's limits


class LedgerError(RuntimeError):
    """A ledger write or read that cannot proceed (unknown entity, bad value)."""


class ProjectionMismatch(LedgerError):
    """A projection row says something its own events do not: the table was edited behind the chain."""


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no spaces, UTF-8 text, no NaN/Inf."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def event_hash(record: Mapping[str, Any]) -> str:
    """The chain hash of one event's fields (everything but ``hash`` itself)."""
    body = {key: record[key] for key in
            ("seq", "kind", "entity", "entity_id", "payload", "run_id", "created_at", "prev_hash")}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


@dataclass
class VerifyReport:
    """Result of :meth:`Ledger.verify`: ``ok`` or the first problem found."""

    ok: bool
    events: int
    rows: int
    problem: str | None = None
    first_bad_seq: int | None = None
    details: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "events": self.events, "rows": self.rows, "problem": self.problem,
                "first_bad_seq": self.first_bad_seq}


class LedgerWriter:
    """Appends events inside one locked transaction; see :meth:`Ledger.writer`."""

    def __init__(self, session: Session, run_id: str | None) -> None:
        self._session = session
        self._run_id = run_id
        head = session.execute(select(Event.seq, Event.hash).order_by(Event.seq.desc()).limit(1)).first()
        self._seq, self._prev = (head[0], head[1]) if head else (0, GENESIS)
        self._known: dict[tuple[type, str], Any] = {}  # rows created, prefetched, or known absent (None)

    @property
    def seq(self) -> int:
        """The chain's head as this transaction sees it (its own appends included)."""
        return self._seq

    def changed_since(self, seq: int, entities: Iterable[str]) -> dict[str, set[str]]:
        """Ids of the rows of ``entities`` that events after ``seq`` wrote, committed before this lock was taken.

        Lets a caller that loaded rows before taking the lock bring them up to date under it.
        """
        query = (select(Event.entity, Event.entity_id).distinct()
                 .where(Event.seq > seq, Event.entity.in_(list(entities))))
        changed: dict[str, set[str]] = {entity: set() for entity in entities}
        with self._session.no_autoflush:
            for entity, entity_id in self._session.execute(query):
                changed[entity].add(entity_id)
        return changed

    def get(self, entity: str, entity_id: str) -> dict[str, Any] | None:
        """A projection row as this transaction sees it (including its own earlier writes)."""
        row = self._row(_projection(entity), entity_id)
        return row.as_dict() if row is not None else None

    def prefetch(self, entity: str, entity_ids: Iterable[str]) -> None:
        """Look these rows up in one query, so that reading or recording them later needs none.

        A batch of new files would otherwise cost one query per row it creates, only to find it absent.
        """
        model = _projection(entity)
        wanted = {entity_id for entity_id in entity_ids if (model, entity_id) not in self._known}
        if not wanted:
            return
        with self._session.no_autoflush:
            found = {row.id: row for row in self._session.scalars(select(model).where(model.id.in_(wanted)))}
        self._known.update({(model, entity_id): found.get(entity_id) for entity_id in wanted})

    def _row(self, model: type, entity_id: str) -> Any:
        """The row as this transaction has it, without flushing pending writes first.

        Writes are flushed once, at commit, in batched INSERTs: flushing before every look-up (the session's
        default) cost more than all the rest of recording an ingested file.
        """
        key = (model, entity_id)
        if key in self._known:
            return self._known[key]
        with self._session.no_autoflush:
            return self._session.get(model, entity_id)

    def record(self, entity: str, entity_id: str, fields: Mapping[str, Any], kind: str) -> bool:
        """Upsert ``fields`` into row ``entity_id`` of ``entity`` through a chained event.

        Only the fields that differ from the current row go into the event; when none differ,
        nothing is written and ``False`` is returned.
        """
        model = _projection(entity)
        unknown = set(fields) - {column.name for column in model.__table__.columns} - {"id"}
        if unknown:
            raise LedgerError(f"{entity} has no column(s) {sorted(unknown)}")
        row = self._row(model, entity_id)
        current = row.as_dict() if row is not None else {}
        patch = {key: value for key, value in fields.items()
                 if key != "id" and (row is None or not _same(current.get(key), value))}
        if row is not None and not patch:
            return False
        payload_text = canonical_json(patch)
        record = {
            "seq": self._seq + 1,
            "kind": kind,
            "entity": entity,
            "entity_id": entity_id,
            "payload": json.loads(payload_text),
            "run_id": self._run_id,
            "created_at": utc_now(),
            "prev_hash": self._prev,
        }
        digest = event_hash(record)
        self._session.add(Event(**{**record, "payload": payload_text}, hash=digest))
        if row is None:
            row = model(id=entity_id)
            self._session.add(row)
            self._known[(model, entity_id)] = row
        for key, value in patch.items():
            setattr(row, key, value)
        self._seq, self._prev = record["seq"], digest
        return True


class Ledger:
    """Connection to one ledger database (SQLite file or PostgreSQL URL)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _make_engine(url)
        Base.metadata.create_all(self.engine)
        _add_missing_columns(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def writer(self, run_id: str | None = None) -> Iterator[LedgerWriter]:
        """One atomic, serialised batch of appends: all of them land, or none does."""
        with self._sessions() as session, session.begin():
            session.connection(execution_options={_WRITE: True})
            if self.engine.dialect.name == "postgresql":
                session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})
            yield LedgerWriter(session, run_id)

    def record(self, entity: str, entity_id: str, fields: Mapping[str, Any], kind: str,
               run_id: str | None = None) -> bool:
        """A single upsert in its own transaction; see :meth:`LedgerWriter.record`."""
        with self.writer(run_id) as writer:
            return writer.record(entity, entity_id, fields, kind)

    def get(self, entity: str, entity_id: str) -> dict[str, Any] | None:
        with self._sessions() as session:
            row = session.get(_projection(entity), entity_id)
            return row.as_dict() if row is not None else None

    def scan(self, entity: str, columns: tuple[str, ...], batch: int = 2000) -> Iterator[tuple[Any, ...]]:
        """Stream ``columns`` of every row of ``entity``, ``batch`` rows in memory at a time."""
        model = _projection(entity)
        query = select(*(getattr(model, column) for column in columns))
        with self._sessions() as session:
            yield from (tuple(row) for row in session.execute(query.execution_options(yield_per=batch)))

    def rows(self, entity: str, **equals: Any) -> list[dict[str, Any]]:
        """Rows of a projection whose columns equal ``equals``, ordered by id."""
        model = _projection(entity)
        query = select(model).order_by(model.id)
        for column, value in equals.items():
            query = query.where(getattr(model, column) == value)
        with self._sessions() as session:
            return [row.as_dict() for row in session.scalars(query)]

    def verified_rows(self, entity: str, ids: Iterable[str] | None = None, **equals: Any) -> list[dict[str, Any]]:
        """Like :meth:`rows` (``ids`` narrows it further), each row checked against a replay of its own events.

        Only those rows' events are read (one indexed query, or one per few hundred ``ids``), so a stage can
        afford it on every run. Raises :class:`ProjectionMismatch` naming the row and column that disagree,
        or an event whose hash no longer matches its content.
        """
        model = _projection(entity)
        found: list[dict[str, Any]] = []
        with self._sessions() as session:
            if ids is None:
                found += _verified_rows(session, entity, model, equals, None)
            else:
                wanted = sorted(set(ids))
                for start in range(0, len(wanted), _IDS_PER_QUERY):
                    found += _verified_rows(session, entity, model, equals, wanted[start:start + _IDS_PER_QUERY])
        return sorted(found, key=lambda row: row["id"])

    def chain_hashes(self) -> list[str]:
        """Every event's chain hash in sequence order: the leaves of the ledger's Merkle tree."""
        with self._sessions() as session:
            return list(session.scalars(select(Event.hash).order_by(Event.seq)).yield_per(20_000))

    def events(self, entity: str | None = None, entity_id: str | None = None,
               kind: str | None = None) -> list[dict[str, Any]]:
        query = select(Event).order_by(Event.seq)
        if entity is not None:
            query = query.where(Event.entity == entity)
        if entity_id is not None:
            query = query.where(Event.entity_id == entity_id)
        if kind is not None:
            query = query.where(Event.kind == kind)
        with self._sessions() as session:
            return [_event_dict(row) for row in session.scalars(query)]

    def head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the newest event; ``(0, GENESIS)`` for an empty ledger."""
        with self._sessions() as session:
            head = session.execute(select(Event.seq, Event.hash).order_by(Event.seq.desc()).limit(1)).first()
            return (head[0], head[1]) if head else (0, GENESIS)

    def verify(self) -> VerifyReport:
        """Recompute the chain, then check every projection row against the replayed events."""
        expected: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in PROJECTIONS}
        prev, count = GENESIS, 0
        with self._sessions() as session:
            for row in session.scalars(select(Event).order_by(Event.seq)).yield_per(2000):
                count += 1
                record = _event_dict(row)
                problem = _chain_problem(record, count, prev, row.payload)
                if problem:
                    return VerifyReport(False, count, 0, problem, row.seq)
                prev = row.hash
                if record["entity"] in expected:
                    expected[record["entity"]].setdefault(record["entity_id"], {}).update(record["payload"])
            return self._compare_projections(session, expected, count)

    def _compare_projections(self, session: Session, expected: dict[str, dict[str, dict[str, Any]]],
                             events: int) -> VerifyReport:
        rows = 0
        for name, model in PROJECTIONS.items():
            replayed = expected[name]
            seen: set[str] = set()
            for row in session.scalars(select(model).order_by(model.id)):
                rows += 1
                seen.add(row.id)
                problem = _row_problem(name, row.as_dict(), replayed.get(row.id))
                if problem:
                    return VerifyReport(False, events, rows, problem,
                                        _last_seq_for(session, name, row.id) if row.id in replayed else None)
            missing = sorted(set(replayed) - seen)
            if missing:
                return VerifyReport(False, events, rows, f"{name} row {missing[0]!r} recorded in the chain is missing",
                                    _last_seq_for(session, name, missing[0]))
        return VerifyReport(True, events, rows)


def _verified_rows(session: Session, entity: str, model: type[Projection], equals: Mapping[str, Any],
                   ids: list[str] | None) -> list[dict[str, Any]]:
    """One batch of :meth:`Ledger.verified_rows`."""
    def narrowed(query: Select) -> Select:
        for column, value in equals.items():
            query = query.where(getattr(model, column) == value)
        return query if ids is None else query.where(model.id.in_(ids))

    rows = [row.as_dict() for row in session.scalars(narrowed(select(model)))]
    if ids is None:  # the events of the rows found, whatever the filter
        query = narrowed(select(Event).join(model, (Event.entity == entity) & (Event.entity_id == model.id)))
    else:  # the events of every id asked for, so that a row deleted from the table shows too
        query = select(Event).where(Event.entity == entity, Event.entity_id.in_(ids))
    events = session.scalars(query.order_by(Event.entity_id, Event.seq))
    replayed: dict[str, dict[str, Any]] = {}
    for row in events:
        record = _event_dict(row)
        if event_hash(record) != row.hash or canonical_json(record["payload"]) != row.payload:
            raise ProjectionMismatch(f"event {row.seq} ({entity} {row.entity_id!r}) was changed: its hash does "
                                     "not match its content (see `soundtrail ledger verify`)")
        replayed.setdefault(row.entity_id, {}).update(record["payload"])
    problems = [_row_problem(entity, row, replayed.get(row["id"])) for row in rows]
    if ids is not None and not equals:
        problems += [f"{entity} row {missing!r} recorded in the chain is missing"
                     for missing in sorted(set(replayed) - {row["id"] for row in rows})]
    problem = next((problem for problem in problems if problem), None)
    if problem:
        raise ProjectionMismatch(f"{problem}: refusing to use it (see `soundtrail ledger verify`)")
    return rows


def _row_problem(entity: str, row: Mapping[str, Any], replayed: Mapping[str, Any] | None) -> str | None:
    """How a projection row differs from the replay of its events, or None when they agree."""
    if replayed is None:
        return f"{entity} row {row['id']!r} has no event in the chain"
    for column, value in row.items():
        if column != "id" and not _same(value, replayed.get(column)):
            return (f"{entity} row {row['id']!r} column {column!r} is {value!r} but the chain says "
                    f"{replayed.get(column)!r}")
    return None


def _chain_problem(record: dict[str, Any], position: int, prev: str, payload_text: str) -> str | None:
    seq = record["seq"]
    if seq != position:
        return (f"event {position} is missing (next stored is {seq}): a record was deleted"
                if seq > position else f"event {seq} is out of order")
    if record["prev_hash"] != prev:
        return f"event {seq} does not link to event {seq - 1}: a record was inserted or reordered"
    if canonical_json(record["payload"]) != payload_text:
        return f"event {seq} payload is not canonical JSON: it was edited"
    if event_hash(record) != record["hash"]:
        return f"event {seq} was changed: its hash does not match its content"
    return None


def _last_seq_for(session: Session, entity: str, entity_id: str) -> int | None:
    return session.execute(select(Event.seq).where(Event.entity == entity, Event.entity_id == entity_id)
                           .order_by(Event.seq.desc()).limit(1)).scalar()


def _event_dict(row: Event) -> dict[str, Any]:
    return {"seq": row.seq, "kind": row.kind, "entity": row.entity, "entity_id": row.entity_id,
            "payload": json.loads(row.payload), "run_id": row.run_id, "created_at": row.created_at,
            "prev_hash": row.prev_hash, "hash": row.hash}


def _projection(entity: str) -> type[Projection]:
    try:
        return PROJECTIONS[entity]
    except KeyError:
        raise LedgerError(f"unknown ledger entity {entity!r}; known: {sorted(PROJECTIONS)}") from None


def _add_missing_columns(engine: Engine) -> None:
    """Give a ledger written by an older soundtrail the projection columns added since (``create_all`` makes
    missing tables only). They are nullable: every existing row reads NULL, which is what replaying its events,
    none of which names the column, gives, so ``verify`` still holds."""
    inspector = inspect(engine)
    for name, model in PROJECTIONS.items():
        present = {column["name"] for column in inspector.get_columns(name)}
        for column in model.__table__.columns:
            if column.name in present:
                continue
            column_type = column.type.compile(dialect=engine.dialect)
            try:
                with engine.begin() as connection:
                    connection.execute(text(f"ALTER TABLE {name} ADD COLUMN {column.name} {column_type}"))
            except DBAPIError:  # another process added it first
                if column.name not in {found["name"] for found in inspect(engine).get_columns(name)}:
                    raise


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 120, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # let SQLAlchemy's "begin" hook issue BEGIN
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=120000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection: Any) -> None:
            # A writer's IMMEDIATE takes the write lock up front, so two writers can never both read the same
            # chain head and fork the chain. Reads begin DEFERRED: under WAL they never wait for the lock.
            immediate = connection.get_execution_options().get(_WRITE, False)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    return create_engine(url, pool_pre_ping=True)
