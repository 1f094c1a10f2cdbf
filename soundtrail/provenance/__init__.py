"""The ledger and everything that reads it: hash chain, licence policy, lineage, audits, credentials."""
