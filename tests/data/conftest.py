"""Fixtures for the data tests: prepared datasets built once per session into a temporary folder."""

from __future__ import annotations

import pytest

from scalinglab.data import open_dataset, prepare


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Never touch the user's ~/.cache: every test gets its own dataset cache."""
    monkeypatch.setenv("SCALINGLAB_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def default_text(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "text-default"
    prepare("text:default", out)
    return open_dataset(out)


@pytest.fixture(scope="session")
def digits(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "digits8"
    prepare("image:digits8", out)
    return open_dataset(out)


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory):
    """~300 KB of the bundled corpus as a folder of three files (real text, fast to tokenise)."""
    from scalinglab.data.text import default_corpus

    text = default_corpus()[0].decode()
    d = tmp_path_factory.mktemp("corpus")
    for i in range(3):
        (d / f"part{i}.txt").write_text(text[i * 2_000_000:i * 2_000_000 + 100_000])
    return d
