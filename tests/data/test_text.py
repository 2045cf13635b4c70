"""Text: the bundled corpus, user sources, tokenisers round-tripping, stable disjoint splits, bad input."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scalinglab.data import open_dataset, prepare
from scalinglab.data.splits import assign_splits
from scalinglab.data.text import CORPORA, DOC_SEP, split_documents
from scalinglab.data.tokenizer import BPETokenizer, ByteTokenizer
from scalinglab.errors import ConfigError, InputError


def test_bundled_corpus_matches_its_provenance_record():
    manifest = json.loads((CORPORA / "default.json").read_text())
    raw = (CORPORA / "default.txt.gz").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == manifest["gz_sha256"]
    text = gzip.decompress(raw)
    assert hashlib.sha256(text).hexdigest() == manifest["text_sha256"]
    assert len(text) == manifest["text_bytes"] > 8_000_000
    assert b"In the beginning God created the heaven and the earth." in text
    assert b"To be, or not to be" in text
    assert b"Gutenberg" not in text
    docs = split_documents(text)
    assert len(docs) == manifest["documents"] and DOC_SEP.join(docs) == text
    assert (CORPORA / "PROVENANCE.md").is_file()


def test_default_text_dataset(default_text):
    ds = default_text
    assert ds.vocab_size == 256 and ds.dtype == np.uint8 and ds.domain == "text"
    n = {s: ds.num_tokens(s) for s in ("train", "val", "test")}
    # the split rule is sha256 of each document: these counts are the same on every machine and every run
    assert n == {"train": 9026038, "val": 164247, "test": 105344}
    manifest = json.loads((CORPORA / "default.json").read_text())
    assert sum(n.values()) + 2 * len(DOC_SEP) == manifest["text_bytes"]  # every byte in exactly one split
    assert ds.bytes_per_token("val") == 1.0
    assert len(ds.documents("val")) == len(ds.doc_starts("val")) == 41


def test_splits_are_disjoint_and_cover_the_corpus(default_text):
    docs = {s: default_text.documents(s) for s in ("train", "val", "test")}
    sets = {s: set(d) for s, d in docs.items()}
    assert not sets["train"] & sets["val"] and not sets["train"] & sets["test"]
    assert not sets["val"] & sets["test"]
    from scalinglab.data.text import load_documents

    original = [d.decode() for d in load_documents("default")[0]]
    assert sorted(original) == sorted(docs["train"] + docs["val"] + docs["test"])


def test_split_assignment_is_a_function_of_the_document_alone():
    docs = [f"document number {i}".encode() for i in range(2000)]
    a = assign_splits(docs, 0.05, 0.05)
    b = assign_splits(list(reversed(docs)), 0.05, 0.05)
    assert a == list(reversed(b))
    assert 50 < a.count("val") < 160 and 50 < a.count("test") < 160
    assert assign_splits([b"x", b"x", b"y", b"z"], 0.01, 0.01).count("train") == 2  # copies stay together


@settings(max_examples=150, deadline=None, database=None)
@given(st.text())
def test_byte_tokenizer_round_trips_any_unicode(s):
    tok = ByteTokenizer()
    assert tok.decode(tok.encode(s)) == s


@pytest.fixture(scope="module")
def bpe(small_corpus):
    from scalinglab.data.text import load_documents

    docs = [d.decode() for d in load_documents(str(small_corpus))[0]]
    return BPETokenizer.train(docs, 600)


@settings(max_examples=150, deadline=None, database=None)
@given(st.text())
def test_bpe_round_trips_any_unicode(bpe, s):
    assert bpe.decode(bpe.encode(s)) == s


def test_bpe_dataset_round_trips_and_compresses(small_corpus, tmp_path):
    info = prepare(f"text:{small_corpus}", tmp_path / "bpe", tokenizer="bpe", vocab_size=600)
    ds = open_dataset(tmp_path / "bpe")
    assert ds.vocab_size == info.vocab_size == 600 and ds.dtype == np.uint16
    from scalinglab.data.text import load_documents

    original = sorted(d.decode() for d in load_documents(str(small_corpus))[0])
    got = sorted(d for s in ("train", "val", "test") for d in ds.documents(s))
    assert got == original
    assert 2.0 < ds.bytes_per_token("train") < 4.0
    text = ds.text("val")
    assert len(text.encode()) == pytest.approx(ds.bytes_per_token("val") * ds.num_tokens("val"))
    assert ds.tokenizer.decode(ds.tokenizer.encode("And God said")) == "And God said"
    assert ds.meta["tokenizer"]["fingerprint"] == ds.tokenizer.fingerprint


def test_user_sources_file_folder_glob(small_corpus, tmp_path):
    one = prepare(f"text:{small_corpus / 'part0.txt'}", tmp_path / "a")
    folder = prepare(f"text:{small_corpus}", tmp_path / "b")
    glob = prepare(f"text:{small_corpus}/part*.txt", tmp_path / "c")
    assert folder.tokens == glob.tokens and folder.fingerprint == glob.fingerprint
    assert sum(one.tokens.values()) < sum(folder.tokens.values())


def test_non_utf8_is_fine_for_bytes_and_reported_for_bpe(tmp_path):
    src = tmp_path / "latin1"
    src.mkdir()
    for i in range(6):
        (src / f"{i}.txt").write_bytes(f"caf{i} ".encode() * 300 + b"na\xefve\n\n" + b"more text " * 500)
    prepare(f"text:{src}", tmp_path / "bytes")
    ds = open_dataset(tmp_path / "bytes")
    raw = b"".join(np.asarray(ds.tokens(s)).tobytes() for s in ("train", "val", "test"))
    assert raw.count(b"\xef") == 6
    with pytest.raises(InputError, match=r"0.txt: byte 0xef at offset 1502 is not valid UTF-8"):
        prepare(f"text:{src}", tmp_path / "bpe", tokenizer="bpe", vocab_size=300)
    assert not (tmp_path / "bpe").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folder left


def test_bad_input_gives_clear_errors_and_writes_nothing(tmp_path, small_corpus):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "blank.txt").write_text("\n\n   \n")
    with pytest.raises(InputError, match="empty"):
        prepare(f"text:{empty}", tmp_path / "o1")
    with pytest.raises(InputError, match="matches no file"):
        prepare(f"text:{tmp_path}/*.nothing", tmp_path / "o2")
    from scalinglab.data.tokenizer import dtype_for_vocab

    dtypes = [dtype_for_vocab(v).name for v in (256, 257, 65536, 65537)]
    assert dtypes == ["uint8", "uint16", "uint16", "uint32"]
    with pytest.raises(ConfigError, match="cannot hold a vocabulary of 600"):
        prepare(f"text:{small_corpus}", tmp_path / "o3", tokenizer="bpe", vocab_size=600, dtype="uint8")
    with pytest.raises(ConfigError, match="unknown option 'vocab'"):
        prepare("text:default,vocab=5", tmp_path / "o4")
    with pytest.raises(ConfigError, match="DOMAIN:SOURCE"):
        prepare("audio:default", tmp_path / "o5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]
    prepare(f"text:{small_corpus}", tmp_path / "o6")
    with pytest.raises(ConfigError, match="already exists"):
        prepare(f"text:{small_corpus}", tmp_path / "o6")


def test_split_documents_packs_paragraphs_and_never_cuts_a_character():
    text = ("Ünïcödé paragraph. " * 30 + "\n\n") * 40
    docs = split_documents(text.encode(), doc_bytes=2000)
    assert len(docs) > 5 and all(d.decode() for d in docs)
    assert [w for d in docs for w in d.decode().split()] == text.split()
    assert all(d.endswith(b"paragraph.") for d in docs)  # cut at paragraph ends
    huge = ("é" * 50_000).encode()  # one line, no paragraph breaks
    parts = split_documents(huge, doc_bytes=1000)
    assert len(parts) > 10 and b"".join(parts) == huge and all(p.decode() for p in parts)


def test_package_ships_the_corpus():
    assert Path(CORPORA / "default.txt.gz").stat().st_size < 4_000_000


def test_text_with_arithmetic_qa_mixed_in(small_corpus, tmp_path):
    import re

    info = prepare(f"text:{small_corpus},qa=0.1", tmp_path / "qa")
    ds = open_dataset(info.path)
    text = "".join(ds.text(s) for s in ("train", "val", "test"))
    qa = re.findall(r"Q: What is (\d+) (plus|minus|times) (\d+)\?\nA: (-?\d+)\n", text)
    ops = {"plus": lambda a, b: a + b, "minus": lambda a, b: a - b, "times": lambda a, b: a * b}
    assert len(qa) > 1000 and all(ops[o](int(a), int(b)) == int(c) for a, o, b, c in qa)
    share = sum(len(m) for m in re.findall(r"Q: What is [^\n]*\nA: -?\d+\n", text)) / len(text)
    assert 0.05 < share < 0.12
