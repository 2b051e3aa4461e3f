"""Every file or folder the README, ARCHITECTURE.md and docs/ name in backticks exists, so the
documents cannot drift from the layout unnoticed."""
import pathlib
import re

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
PACKAGE = REPO / "operator" / "perf_operator"
DOCUMENTS = [REPO / "README.md", REPO / "ARCHITECTURE.md", *sorted((REPO / "docs").glob("*.md"))]
#: A backticked path: folders end in "/", files carry one of the project's extensions.
PATH = re.compile(r"^[\w.-]+(/[\w.-]+)*(/|\.(py|md|yaml|yml|sql|lua|sh|json|toml|png|html|txt))$")
#: Paths of the system the operator runs on, files that exist only once something has run, and
#: the key of the rules in a generated ConfigMap.
ELSEWHERE = re.compile(
    r"^(/|~|\.\./)|postgresql\.auto\.conf|kubeconfig|perf-operator\.rules\.yaml")


def named_paths(document: pathlib.Path):
    for span in re.findall(r"`([^`\n]+)`", document.read_text()):
        for token in re.split(r"[\s:,()]+", span):
            token = token.strip().rstrip(".")
            if PATH.match(token) and not ELSEWHERE.search(token) and "*" not in token:
                yield token


def exists(document: pathlib.Path, path: str) -> bool:
    """Relative to the repository, the package (ARCHITECTURE names modules so) or the
    document's own folder; a bare file or folder name anywhere in the repository."""
    if any((base / path).exists() for base in (REPO, PACKAGE, document.parent)):
        return True
    bare = path.rstrip("/")
    return "/" not in bare and any(
        ".git" not in found.parts for found in REPO.rglob(bare))


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: d.name)
def test_named_paths_exist(document):
    missing = sorted({p for p in named_paths(document) if not exists(document, p)})
    assert not missing, f"{document.name} names paths that do not exist: {missing}"
