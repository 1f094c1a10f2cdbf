"""The ingest driver: decisions stream batch by batch in curator order, and unchanged files are not read again."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest

from soundtrail.audio import AudioStream
from soundtrail.ingest.catalog import Catalog
from soundtrail.ingest.stage import AnalysisBatch, ingest_inputs
from soundtrail.provenance.ledger import Ledger
from soundtrail.workspace import Workspace
from tests.audio_fixtures import melody, write, write_manifest
from tests.ingest.driver import in_process, ingest


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "soundtrail.toml").write_text("[ingest]\nbatch_size = 1\n")
    return Workspace(root)


def test_decisions_stream_in_curator_order_while_later_batches_are_analysed(tmp_path: Path,
                                                                            workspace: Workspace) -> None:
    """The manifest lists files against their path order, the copy (``a_copy``) first by path but last by line."""
    folder = tmp_path / "c"
    names = [f"m{index}.flac" for index in range(5, 0, -1)]
    for seed, name in enumerate(names):
        write(folder / name, melody(100 + seed, seconds=4))
    write(folder / "z_original.flac", melody(99, seconds=4))
    write(folder / "a_copy.ogg", melody(99, seconds=4) * 0.7, format="OGG", subtype="VORBIS")
    order = ["z_original.flac", *names, "a_copy.ogg"]
    manifest = write_manifest(folder, [{"path": name, "license": "CC0-1.0"} for name in order])
    log: list[str] = []
    analyse = in_process(workspace, str(manifest))

    def logged_analysis(batches: list[AnalysisBatch]) -> Iterator[list[dict]]:
        for index, records in enumerate(analyse(batches)):
            log.append(f"analysed {index}")
            yield records

    real_admit_batch = Catalog.admit_batch

    def logged_admit_batch(catalog: Catalog, records: list[dict], run_id: str | None) -> list:
        log.append("recorded")
        return real_admit_batch(catalog, records, run_id)

    with mock.patch.object(Catalog, "admit_batch", logged_admit_batch):
        items = ingest_inputs(workspace, [str(folder)], str(manifest), logged_analysis, "run")
    assert [Path(item.path).name for item in items] == order
    assert [item.status for item in items] == ["accepted"] * 6 + ["duplicate"]
    assert items[0].asset_id in items[-1].reason, "the first copy in manifest order is the original"
    for recorded in range(len(order)):  # batch k is recorded before batch k + 2 is analysed
        position = [index for index, entry in enumerate(log) if entry == "recorded"][recorded]
        assert log[:position].count("recorded") == recorded
        assert sum(entry.startswith("analysed") for entry in log[:position]) <= recorded + 2, log


@pytest.fixture
def decodes() -> Iterator[list[str]]:
    """The files the analysis starts decoding (every stream whose blocks are asked for)."""
    seen: list[str] = []
    real = AudioStream.blocks

    def counting(stream: AudioStream, *args, **kwargs):
        seen.append(stream.path.name)
        return real(stream, *args, **kwargs)

    with mock.patch.object(AudioStream, "blocks", counting):
        yield seen


def test_unchanged_files_are_not_decoded_again_and_a_new_file_alone_is(tmp_path: Path, workspace: Workspace,
                                                                       decodes: list[str]) -> None:
    folder = tmp_path / "drop"
    rows = []
    for index in range(4):
        write(folder / f"t{index}.flac", melody(110 + index, seconds=4))
        rows.append({"path": f"t{index}.flac", "license": "CC0-1.0", "rights_holder": "Label"})
    write(folder / "nc.flac", melody(120, seconds=4))
    write(folder / "nc_copy.flac", melody(120, seconds=4) * 0.6)
    (folder / "broken.wav").write_bytes(b"RIFF....WAVEjunk")
    rows += [{"path": "nc.flac", "license": "CC-BY-NC-4.0", "rights_holder": "Label"},
             {"path": "nc_copy.flac", "license": "CC-BY-4.0", "rights_holder": "Label"},
             {"path": "broken.wav", "license": "CC0-1.0"}]
    manifest = write_manifest(folder, rows)
    first = ingest(workspace, [folder], manifest)
    assert sorted(decodes) == sorted(row["path"] for row in rows if row["path"] != "broken.wav"), "header refused"
    assert first["nc_copy.flac"]["status"] == "quarantined" and first["broken.wav"]["status"] == "quarantined"
    ledger = Ledger(workspace.ledger_url)
    head = ledger.head()

    decodes.clear()
    assert ingest(workspace, [folder], manifest) == first
    assert decodes == [], "an unchanged folder is not decoded"
    os.utime(folder / "t0.flac", ns=(0, (folder / "t0.flac").stat().st_mtime_ns + 10**9))
    assert ingest(workspace, [folder], manifest) == first
    assert decodes == [], "a touched file with the same bytes is hashed, not decoded"
    assert ledger.head() == head

    write(folder / "t9.flac", melody(130, seconds=4))
    rows.append({"path": "t9.flac", "license": "CC0-1.0", "rights_holder": "Label"})
    manifest = write_manifest(folder, rows)
    second = ingest(workspace, [folder], manifest)
    assert decodes == ["t9.flac"]
    assert second == {**first, "t9.flac": second["t9.flac"]} and second["t9.flac"]["status"] == "accepted"

    # The curator corrects the NC row: that file's decision no longer stands, and neither does the copy refused
    # with it; both are read again, and the copy is now a plain duplicate of the original it copies.
    decodes.clear()
    rows[4]["license"] = "CC-BY-4.0"
    manifest = write_manifest(folder, rows)
    third = ingest(workspace, [folder], manifest)
    assert sorted(decodes) == ["nc.flac", "nc_copy.flac"]
    assert third["nc.flac"]["status"] == "accepted"
    assert third["nc_copy.flac"]["status"] == "duplicate", third["nc_copy.flac"]
    assert ledger.verify().ok
