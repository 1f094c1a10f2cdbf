"""What checkpoints cost on a large ledger, against the `ledger verify` it already runs, in one run.

    python benchmarks/ledger_checkpoint.py [--quick] [--events N]

On a SQLite ledger of N events (assets ingested, a tenth of them revoked later), prints wall seconds for:

- the anchor: ``Ledger.verify()``, the chain recomputed and every projection row replayed (what
  ``ledger verify`` has always done);
- the Merkle tree: the chain hashes read and every node built (once per command);
- ``ledger checkpoint`` (verify + tree + block hashes + signature + file), ``ledger verify --checkpoint``
  (verify + tree + comparison) and ``ledger prove ID`` (tree + the entity's events + their audit paths);
- 1,000 audit paths from the one tree (what a proof costs once the tree is built),

and each as a ratio to the anchor: the tree should cost a fraction of the verify it rides on.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from soundtrail.provenance.checkpoints import (  # noqa: E402
    check_ledger,
    ledger_tree,
    prove_entity,
    resolve_checkpoint,
    take_checkpoint,
)
from soundtrail.provenance.ledger import Ledger  # noqa: E402
from soundtrail.workspace import Workspace  # noqa: E402


def fill(ledger: Ledger, events: int) -> None:
    assets = events * 10 // 11
    for start in range(0, assets, 10_000):
        with ledger.writer() as writer:
            writer.prefetch("assets", [f"a{index:07d}" for index in range(start, min(start + 10_000, assets))])
            for index in range(start, min(start + 10_000, assets)):
                writer.record("assets", f"a{index:07d}", {"status": "accepted", "license": "CC0-1.0",
                                                          "title": f"track {index}", "duration_s": 30.0},
                              "asset.ingested")
    with ledger.writer() as writer:
        for index in range(0, events - assets):
            writer.record("assets", f"a{index * 10:07d}", {"status": "revoked", "reason": "takedown"},
                          "asset.revoked")


def timed(run) -> tuple[float, object]:
    started = time.perf_counter()
    result = run()
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--quick", action="store_true", help="20,000 events")
    args = parser.parse_args()
    events = 20_000 if args.quick else args.events
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Workspace(Path(tmp) / "ws")
        fill_s, _ = timed(lambda: fill(Ledger(workspace.ledger_url), events))
        print(f"ledger of {events:,} events written in {fill_s:.1f} s")
        with Ledger(workspace.ledger_url) as ledger:
            verify_s, report = timed(ledger.verify)
            assert report.ok and report.events == events, report.problem
            tree_s, tree = timed(lambda: ledger_tree(ledger))
        checkpoint_s, _ = timed(lambda: take_checkpoint(workspace))
        check_s, result = timed(lambda: check_ledger(workspace))
        assert result.ok, result.problem
        checkpoint = resolve_checkpoint(workspace, None)
        prove_s, proof = timed(lambda: prove_entity(workspace, "a0000010", checkpoint))
        assert len(proof["events"]) == 2
        paths_s, _ = timed(lambda: [tree.inclusion_path(index * (events // 1000)) for index in range(1000)])

    print(f"{'step':<44}{'seconds':>9}{'x verify':>10}")
    for name, seconds in [("anchor: Ledger.verify (chain + projections)", verify_s),
                          ("Merkle tree (hashes read, nodes built)", tree_s),
                          ("ledger checkpoint", checkpoint_s),
                          ("ledger verify (+ the checkpoint)", check_s),
                          ("ledger prove ID", prove_s),
                          ("1,000 audit paths from one tree", paths_s)]:
        print(f"{name:<44}{seconds:>9.2f}{seconds / verify_s:>10.2f}")


if __name__ == "__main__":
    main()
