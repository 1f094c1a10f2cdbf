"""Plain functions, one module per stage. No Prefect or Ray imports: unit-testable in-process."""
