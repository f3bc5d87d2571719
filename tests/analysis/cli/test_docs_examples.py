"""The error lines docs/cli.md shows are the ones the commands print (the docs ran each example)."""

import os
import re
import shlex

import pytest
from click.testing import CliRunner

from analysis.cli import main

from .test_bad_input import ROOT

DOC = os.path.join(ROOT, "docs", "cli.md")


def doc_examples(section: str) -> list:
    """``(command, error line)`` pairs of the ``$ netgraph ...`` examples in ``section`` of docs/cli.md."""
    text = open(DOC, encoding="utf-8").read()
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\$ netgraph (.+)\n(Error: .+)$", body, flags=re.M)


EXAMPLES = doc_examples("Errors and exit statuses")


def test_the_errors_section_has_examples():
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("command,line", EXAMPLES, ids=[c for c, _ in EXAMPLES])
def test_error_example_is_the_real_output(command, line):
    res = CliRunner().invoke(main, shlex.split(command))
    assert res.exit_code == 2
    assert res.stderr.strip() == line
