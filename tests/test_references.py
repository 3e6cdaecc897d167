"""What a learner reads names only documents the repository holds.

Earlier text pointed at design notes and a fact sheet that live outside the repository ("DESIGN §4",
"reference §5.2", the fact sheet's file names): a learner who follows such a pointer finds nothing.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT_SUFFIXES = {".py", ".md", ".ipynb", ".toml", ".yml", ".yaml", ".txt", ".cfg", ".c", ".h"}
#: Pointers at documents outside the repository (this file quotes them, so it is not scanned).
MISSING_DOCUMENTS = re.compile(r"\bDESIGN\b|\breference\W{0,3}§|wasm-on-k8s\.md|kubernetes-api-for-sandbox")


def _tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    names = [name for name in listed.splitlines() if Path(name).suffix in TEXT_SUFFIXES or name == "lab"]
    return [ROOT / name for name in names if ROOT / name != Path(__file__).resolve()]


def test_no_text_points_at_a_document_missing_from_the_repository() -> None:
    files = _tracked_text_files()
    assert any(f.name == "architecture.md" for f in files) and any(f.suffix == ".ipynb" for f in files)
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}"
        for path in files
        if path.is_file()
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if MISSING_DOCUMENTS.search(line)
    ]
    assert found == [], "\n".join(found)


def test_the_pattern_catches_the_old_pointers() -> None:
    for old in ("see DESIGN §4", "(reference §5.2)", "(reference: §3)", "wasm-on-k8s.md 9.1"):
        assert MISSING_DOCUMENTS.search(old), old
    assert not MISSING_DOCUMENTS.search("docs/architecture.md §4 and RFC 1035 §4.2.1")
