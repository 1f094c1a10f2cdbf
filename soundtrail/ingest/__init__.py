"""Ingest: licensed audio in, one ledger status per file (accepted, quarantined, duplicate, blocked).

::

    inputs + manifest --manifest.resolve_inputs--> InputFile --analyze (Ray workers)--> FileAnalysis
        --catalog.Catalog.admit (driver, curator order, ledger)--> asset row + events
        --expiry.apply_licence_terms--> consent terms per asset; expired or withdrawn assets revoked

Pure (no workspace, no ledger): :mod:`.manifest` (manifest rows, input discovery), :mod:`.tags` (licence
and rights fields in file tags), :mod:`.consent` (AI-training statements in rows and C2PA credentials,
licence expiry), :mod:`.analyze` (hash, decode, check, licence, consent, fingerprint one file).
Stage code: :mod:`.catalog` (decide each file against the ledger and record it), :mod:`.expiry` (record
consent terms, revoke what they no longer allow), :mod:`.blocklist` (reference fingerprints of protected works).
"""
