"""The architecture holds: the import contracts in pyproject.toml ([tool.importlinter]) are all kept.

They say that dependencies point one way (cli -> flows -> stages -> foundations), that ``models`` imports only
torch, that stage code never imports Prefect or Ray, and that a stage's pure algorithms never see a workspace or
the ledger. A new import that breaks one fails here, naming the contract and the import chain.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_import_contract_is_kept() -> None:
    environment = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
                               "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))"],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
