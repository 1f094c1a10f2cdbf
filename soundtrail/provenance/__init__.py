"""The ledger and everything that reads it: hash chain, lineage, audits, takedowns, C2PA credentials, OpenLineage."""
