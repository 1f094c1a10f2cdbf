"""Crash-safe writes: the whole file or nothing, and the permissions a plain write would give."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from soundtrail.atomic import atomic_path, atomic_write_bytes, default_file_mode


def test_a_finished_file_gets_the_mode_a_plain_write_would_give(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        atomic_write_bytes(tmp_path / "shard.parquet", b"data")
        with open(tmp_path / "plain", "wb"):
            pass
        mode = stat.S_IMODE((tmp_path / "shard.parquet").stat().st_mode)
        assert mode == stat.S_IMODE((tmp_path / "plain").stat().st_mode) == 0o640
        assert default_file_mode() == 0o640
    finally:
        os.umask(old)


def test_a_group_readable_umask_makes_group_readable_outputs(tmp_path: Path) -> None:
    old = os.umask(0o002)
    try:
        atomic_write_bytes(tmp_path / "out.wav", b"RIFF")
        assert stat.S_IMODE((tmp_path / "out.wav").stat().st_mode) == 0o664
    finally:
        os.umask(old)


def test_a_failed_write_leaves_neither_the_target_nor_its_temporary(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "model.safetensors") as tmp:
        tmp.write_bytes(b"half")
        assert stat.S_IMODE(tmp.stat().st_mode) == 0o600  # private while it is being written
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_a_secret_stays_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o002)
    try:
        atomic_write_bytes(tmp_path / "signer-key.pem", b"-----BEGIN PRIVATE KEY-----", mode=0o600)
        assert stat.S_IMODE((tmp_path / "signer-key.pem").stat().st_mode) == 0o600
    finally:
        os.umask(old)
