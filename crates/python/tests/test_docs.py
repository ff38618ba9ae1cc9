"""The docstring examples of every submodule, and the README's "From Python" examples, run."""

import doctest
import pathlib
import re

import pytest

import gradlab

MODULES = [gradlab.lap, gradlab.aerosol, gradlab.track, gradlab.bayesopt, gradlab.landscape]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


README = pathlib.Path(__file__).resolve().parents[3] / "README.md"


def readme_python_blocks():
    text = README.read_text()
    start = text.find("## From Python")
    if start < 0:
        return []
    end = text.find("\n## ", start + 1)
    section = text[start : end if end > 0 else None]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.mark.skipif(not README.exists(), reason="README.md not beside the crate (installed elsewhere)")
def test_readme_examples_run(tmp_path, monkeypatch):
    blocks = readme_python_blocks()
    assert blocks, "README.md has a '## From Python' section with python examples"
    # The examples run from the repository root; they read only the test data under crates/
    # (linked into a scratch folder) and write into the scratch folder.
    (tmp_path / "crates").symlink_to(README.parent / "crates", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    namespace = {}  # the blocks run in order, as one session
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
