"""Small workspaces for flow tests: a drop folder configured as the workspace's inputs."""

from __future__ import annotations

from pathlib import Path

from tests.audio_fixtures import melody, write, write_manifest

DROP_CONFIG = '[ingest]\nworkers = 1\n[pipeline]\ninputs = ["drop"]\nmanifest = "drop/manifest.jsonl"\n'


def drop_folder_workspace(root: Path) -> Path:
    """A workspace whose configured input folder holds two licensed tracks and one non-commercial one."""
    drop = root / "drop"
    rows = []
    for index in range(2):
        write(drop / f"track{index}.flac", melody(40 + index, seconds=3.0))
        rows.append({"path": f"track{index}.flac", "license": "CC-BY-4.0", "rights_holder": "Label"})
    write(drop / "nc.flac", melody(50, seconds=3.0))
    rows.append({"path": "nc.flac", "license": "CC-BY-NC-4.0", "rights_holder": "Label"})
    write_manifest(drop, rows)
    (root / "soundtrail.toml").write_text(DROP_CONFIG)
    return root
