"""Extra evaluation sets: the bundled transfer corpus, set specs, the training-corpus guard, the run's own
tokenizer (bytes and BPE), and token_batches = eval_batches on the same stream."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from scalinglab.data import ensure_dataset, eval_batches, open_dataset, token_batches
from scalinglab.data.evalsets import check_eval_set, load_eval_set, parse_eval_set
from scalinglab.data.text import CORPORA, bundled_corpora, bundled_corpus, load_documents
from scalinglab.errors import ConfigError, InputError


def test_bundled_transfer_corpus_is_checked_public_domain_and_distinct():
    assert {"default", "xz-docs"} <= set(bundled_corpora())
    text, manifest = bundled_corpus("xz-docs")
    assert hashlib.sha256(text).hexdigest() == manifest["text_sha256"] and len(text) == manifest["text_bytes"]
    assert "public domain" in manifest["licence"] and (CORPORA / "PROVENANCE-xz-docs.md").is_file()
    assert (CORPORA / manifest["file"]).stat().st_size < 300_000  # small: a few hundred KB at most
    docs, origin = load_documents("xz-docs")
    assert len(docs) == manifest["documents"] and set(origin) == {"xz-docs"}
    train_docs = set(load_documents("default")[0])
    assert not train_docs & set(docs)
    words = set(text.decode().lower().split())
    assert {"compression", "lzma", "liblzma"} <= words and "thou" not in words  # another style of English
    with pytest.raises(InputError, match="no bundled corpus 'nope'"):
        bundled_corpus("nope")


def test_specs_parse_and_refuse_clearly():
    es = parse_eval_set("text:xz-docs,split=test,doc_bytes=2048")
    assert (es.kind, es.source, es.split) == ("text", "xz-docs", "test")
    assert dict(es.options) == {"doc_bytes": 2048}
    assert parse_eval_set("file:/a/b,c.txt").source == "/a/b,c.txt"
    for bad, msg in [("xz-docs", "expected text:SOURCE"), ("text:x,split=dev", "split='dev'"),
                     ("text:x,tokenizer=bpe", "does not apply"), ("image:digits8", "expected text:SOURCE")]:
        with pytest.raises(ConfigError, match=msg):
            parse_eval_set(bad)
    with pytest.raises(ConfigError, match="split=test"):
        check_eval_set("text:default", "text:default")  # the training corpus, train split included
    check_eval_set("text:default,split=val", "text:default")
    check_eval_set("text:xz-docs", "text:default")


def test_byte_level_sets_and_the_held_out_split(tmp_path):
    ds = open_dataset(ensure_dataset("text:default", cache_dir=tmp_path / "cache"))
    xz = load_eval_set("text:xz-docs", ds)
    text, _ = bundled_corpus("xz-docs")
    assert xz.n_bytes == len(text) == len(xz.tokens) and xz.bytes_per_token == 1.0
    assert bytes(xz.tokens.astype(np.uint8)) == text  # documents joined by the corpus separator, as stored
    test = load_eval_set("text:default,split=test", ds)
    assert np.array_equal(test.tokens, np.asarray(ds.tokens("test")))  # exactly the never-trained split
    f = tmp_path / "t.txt"
    f.write_text("  héllo wörld\n")
    one = load_eval_set(f"file:{f}", ds)
    assert one.n_bytes == len("héllo wörld".encode()) == len(one.tokens)
    ids = tmp_path / "ids.npy"
    np.save(ids, np.array([1, 2, 3, 255]))
    assert load_eval_set(f"file:{ids}", ds).n_bytes is None
    np.save(ids, np.array([1, 256]))
    with pytest.raises(InputError, match=r"in \[0, 256\)"):
        load_eval_set(f"file:{ids}", ds)
    with pytest.raises(InputError, match="no file"):
        load_eval_set(f"file:{tmp_path / 'nope.txt'}", ds)


def test_bpe_run_encodes_the_set_with_its_own_tokenizer(tmp_path):
    src = tmp_path / "corpus.txt"
    text, _ = bundled_corpus("default")
    src.write_bytes(text[:300_000])
    ds = open_dataset(ensure_dataset(f"text:{src},tokenizer=bpe,vocab_size=400", cache_dir=tmp_path / "c"))
    xz = load_eval_set("text:xz-docs", ds)
    assert xz.tokens.max() < 400 and xz.bytes_per_token > 1.2  # merged tokens: more than a byte each
    assert ds.tokenizer.decode(xz.tokens).encode() == bundled_corpus("xz-docs")[0]


def test_token_batches_walk_a_stream_like_eval_batches(tmp_path):
    ds = open_dataset(ensure_dataset("text:default", cache_dir=tmp_path / "cache"))
    tok = np.asarray(ds.tokens("val"))
    for mb in (None, 3):
        a = list(eval_batches(ds, "val", 8, 64, mb))
        b = list(token_batches(tok, 8, 64, mb))
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert np.array_equal(x.x, y.x) and np.array_equal(x.y, y.y)
            assert (x.mask is None) == (y.mask is None)
            if x.mask is not None:
                assert np.array_equal(x.mask, y.mask)
    assert json.loads((CORPORA / "xz-docs.json").read_text())["name"] == "xz-docs"
