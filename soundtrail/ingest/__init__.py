"""Ingest: licensed audio in, one ledger status per file (accepted, quarantined, duplicate, blocked, disputed).

::

    inputs + manifest --manifest.resolve_inputs--> InputFile --stage.plan_ingest--> unchanged (not read) | to read
        --analyze (Ray workers)--> FileAnalysis --catalog.Catalog.admit_batch (driver, curator order, ledger)-->
        asset row + events --expiry--> consent terms per asset; expired or withdrawn assets revoked

Pure (no workspace, no ledger): :mod:`.manifest` (manifest rows, input discovery), :mod:`.tags` (licence
and rights fields in file tags), :mod:`.consent` (AI-training statements in rows and C2PA credentials,
licence expiry), :mod:`.analyze` (hash, decode, check, licence, consent, fingerprint one file).
Stage code: :mod:`.stage` (the driver: what to read, streaming results into decisions in curator order),
:mod:`.catalog` (decide each file against the ledger and record it), :mod:`.expiry` (record consent terms,
revoke what they no longer allow), :mod:`.blocklist` (reference fingerprints of protected works).
"""
