"""torch ``nn.Module`` definitions only: no I/O, no ledger, nothing beyond torch."""
