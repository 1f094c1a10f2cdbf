"""What checkpoints cost on a large ledger, against the `ledger verify` it already runs, in one run.

    python benchmarks/ledger_checkpoint.py [--quick] [--events N] [--repeats R]

On a SQLite ledger of N events (assets ingested, a tenth of them revoked later), prints wall seconds for:

- the anchor: ``Ledger.verify()``, the chain recomputed and every projection row replayed (what
  ``ledger verify`` has always done);
- the Merkle tree: the chain hashes read and every node built (once per command);
- ``ledger checkpoint`` (verify + tree + block hashes + signature + file), ``ledger verify --checkpoint``
  (verify + tree + comparison) and ``ledger prove ID`` (tree + the entity's events + their audit paths);
- 1,000 audit paths from the one tree (what a proof costs once the tree is built),

and each as a ratio to the anchor (best of --repeats interleaved rounds): the tree should cost a fraction of the
verify it rides on.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import best_seconds  # noqa: E402  (benchmarks/timing.py, shared by the benchmarks)

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="20,000 events, one round")
    args = parser.parse_args()
    events, repeats = (20_000, 1) if args.quick else (args.events, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Workspace(Path(tmp) / "ws")
        started = time.perf_counter()
        fill(Ledger(workspace.ledger_url), events)
        print(f"ledger of {events:,} events written in {time.perf_counter() - started:.1f} s")
        ledger = Ledger(workspace.ledger_url)
        take_checkpoint(workspace)
        checkpoint = resolve_checkpoint(workspace, None)
        tree = ledger_tree(ledger)
        assert len(prove_entity(workspace, "a0000010", checkpoint)["events"]) == 2
        assert check_ledger(workspace, [workspace.root / "reports" / "checkpoints" / checkpoint.source]).ok
        seconds = best_seconds({
            "anchor: Ledger.verify (chain + projections)": ledger.verify,
            "Merkle tree (hashes read, nodes built)": lambda: ledger_tree(ledger),
            "ledger checkpoint": lambda: take_checkpoint(workspace),
            "ledger verify (+ one checkpoint)": lambda: check_ledger(
                workspace, [workspace.root / "reports" / "checkpoints" / checkpoint.source]),
            "ledger prove ID": lambda: prove_entity(workspace, "a0000010", checkpoint),
            "1,000 audit paths from one tree": lambda: [tree.inclusion_path(index * (events // 1000))
                                                        for index in range(1000)],
        }, repeats)
        ledger.close()
    anchor = seconds["anchor: Ledger.verify (chain + projections)"]
    print(f"{'step (best of ' + str(repeats) + ', interleaved)':<44}{'seconds':>9}{'x verify':>10}")
    for name, value in seconds.items():
        print(f"{name:<44}{value:>9.2f}{value / anchor:>10.2f}")


if __name__ == "__main__":
    main()
