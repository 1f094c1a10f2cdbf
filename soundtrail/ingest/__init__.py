"""Ingest: licensed audio in, one ledger status per file (accepted, quarantined, duplicate, blocked, disputed).

::

    inputs + manifest --manifest.resolve_inputs--> InputFile --stage.plan_ingest--> unchanged (not read) | to read
        --analyze (Ray workers)--> FileAnalysis --catalog.Catalog.admit_batch (driver, curator order, ledger)-->
        asset row + events

Pure (no workspace, no ledger): :mod:`.manifest` (manifest rows, input discovery), :mod:`.tags` (licence
and rights fields in file tags), :mod:`.analyze` (hash, decode, check, licence, fingerprint one file).
Stage code: :mod:`.stage` (the driver: what to read, streaming results into decisions in curator order),
:mod:`.catalog` (decide each file against the ledger and record it), :mod:`.blocklist` (reference fingerprints
of protected works).
"""
