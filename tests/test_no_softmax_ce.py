"""No softmax cross-entropy on multi-hot targets anywhere in the platform (issue 21).

A 12-lead ECG has several true classes at once: every objective is the configured per-class
loss on sigmoid outputs (BCE, focal, ASL). PyTorch's `F.cross_entropy` accepts sigmoid
outputs and multi-hot targets without an error and silently trains another objective, which
is how BioDG's IRM, V-REx, DANN and Fish went wrong. So every use of a softmax or a
softmax-family loss in platform/ is an error, unless its line says why it is single-label:
the domain discriminators of DANN and CDAN classify one domain id per record.

The scan reads the syntax tree (names and attributes, not comments or docstrings), so
prose about cross-entropy is not flagged and an aliased import (`from torch.nn.functional
import cross_entropy as ce`) is.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PLATFORM = Path(__file__).resolve().parents[1] / "platform"
SOFTMAX_NAMES = frozenset({"cross_entropy", "CrossEntropyLoss", "log_softmax", "nll_loss", "NLLLoss", "softmax",
                           "LogSoftmax", "Softmax"})
MARKER = "# softmax-ok: domain ids are single-label"


def softmax_uses(path: Path) -> list[str]:
    """`path:line: name` of every softmax-family name used in the file whose lines lack the marker."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Name):
            name = node.id
        elif isinstance(node, ast.Attribute):
            name = node.attr
        elif isinstance(node, ast.alias):
            name = node.name.rpartition(".")[2]
        else:
            continue
        if name not in SOFTMAX_NAMES:
            continue
        start = node.lineno
        end = getattr(node, "end_lineno", None) or start
        if not any(MARKER in lines[i - 1] for i in range(start, end + 1)):  # a call may span lines
            found.append(f"{path}:{start}: {name}")
    return sorted(set(found))


def test_no_softmax_cross_entropy_in_the_platform():
    offending = [use for path in sorted(PLATFORM.rglob("*.py")) for use in softmax_uses(path)]
    assert not offending, ("softmax or a softmax-family loss on multi-label outputs; if it is single-label "
                           f"(a domain discriminator), end its line with {MARKER!r}:\n" + "\n".join(offending))


@pytest.mark.parametrize("code", [
    "import torch.nn.functional as F\nloss = F.cross_entropy(torch.sigmoid(logits), y)\n",
    "import torch\ncriterion = torch.nn.CrossEntropyLoss()\n",
    "from torch.nn.functional import nll_loss as nll\n",
    "p = logits.softmax(dim=1)\n",
    "loss = F.nll_loss(F.log_softmax(logits, 1),\n                  y)\n",
])
def test_the_scan_catches_a_planted_softmax_loss(tmp_path, code):
    planted = tmp_path / "planted.py"
    planted.write_text(code)
    assert softmax_uses(planted)


def test_the_scan_lets_marked_discriminators_and_prose_through(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text(
        '"""Softmax cross-entropy (cross_entropy) on multi-hot targets appears nowhere."""\n'
        "import torch.nn.functional as F\n"
        f"domain_loss = F.cross_entropy(discriminator(features), domains)  {MARKER}\n"
        "# F.cross_entropy would be wrong here\n"
        "loss = F.binary_cross_entropy_with_logits(logits, y)\n")
    assert softmax_uses(planted) == []
    planted.write_text("import torch.nn.functional as F\n"
                       "domain_loss = F.cross_entropy(discriminator(features), domains)  # single-label\n")
    assert softmax_uses(planted) == [f"{planted}:2: cross_entropy"]
