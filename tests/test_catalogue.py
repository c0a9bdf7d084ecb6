import hashlib
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = json.loads((ROOT / "corpora" / "catalogue.json").read_text(encoding="utf-8"))


def test_catalogue_entries_name_source_licence_and_size():
    assert {"tinyshakespeare", "default"} <= {entry["name"] for entry in CATALOGUE}
    for entry in CATALOGUE:
        assert entry["source"] and entry["licence"]


@pytest.mark.parametrize("entry", [e for e in CATALOGUE if e["path"]], ids=lambda e: e["name"])
def test_catalogued_file_beside_the_repo_has_the_recorded_hash(entry):
    path = ROOT / entry["path"]
    if not path.exists():
        pytest.skip(f"{path} is not beside this checkout")
    data = path.read_bytes()
    assert len(data) == entry["bytes"]
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]
