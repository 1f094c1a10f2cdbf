"""RFC 3161 tokens from a real TSA (OpenSSL's, on a local port): requested, checked, and refused when they lie."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from soundtrail.provenance.timestamp import TimestampError, check_timestamp, load_roots, request_timestamp
from tests.provenance.tsa import local_tsa


def test_a_token_stamps_the_bytes_and_verifies_against_the_tsa_root() -> None:
    with local_tsa() as tsa:
        stamp = request_timestamp(tsa.url, b"checkpoint signature")
        roots = load_roots(tsa.root_pem)
    assert len(tsa.requests) == 1
    assert abs(dt.datetime.fromisoformat(stamp.time) - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)
    assert hashlib.sha256(b"checkpoint signature").digest() in tsa.requests[0], "only the hash was sent"

    trusted = check_timestamp(stamp.token, b"checkpoint signature", roots)
    assert trusted.trusted and trusted.problem is None and trusted.time == stamp.time
    unchecked = check_timestamp(stamp.token, b"checkpoint signature", None)
    assert not unchecked.trusted and unchecked.problem is None, "intact, but nobody said whom to trust"

    other = check_timestamp(stamp.token, b"another signature", roots)
    assert other.problem == "the timestamp token stamps other bytes than this checkpoint's signature"
    with local_tsa() as stranger:  # a TSA with another root
        foreign = load_roots(stranger.root_pem)
    assert "does not verify against the trusted TSA roots" in check_timestamp(stamp.token, b"checkpoint signature",
                                                                             foreign).problem
    broken = check_timestamp(stamp.token[:-40], b"checkpoint signature", roots)
    assert broken.problem and not broken.trusted


def test_an_unreachable_authority_is_a_clear_error() -> None:
    with local_tsa() as tsa:
        url = tsa.url
    with pytest.raises(TimestampError, match=f"timestamp authority {url} did not answer"):
        request_timestamp(url, b"x", timeout_s=5)
