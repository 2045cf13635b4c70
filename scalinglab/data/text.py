"""Text sources -> documents (bytes). The bundled corpus, or any file, folder or glob of the user's.

A document is the unit of the train/val/test split. A file whose text holds form feeds (a line with only
``\\f``, as in the bundled corpus) is cut there; any other file is cut into runs of whole paragraphs of at
least ``doc_bytes`` bytes (see ``split_documents``).
"""

from __future__ import annotations

import bisect
import glob
import gzip
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from scalinglab.errors import ConfigError, InputError

CORPORA = Path(__file__).resolve().parent / "corpora"
DOC_SEP = b"\n\x0c\n"  # joins documents in the bundled corpus and in every text token stream
DOC_BYTES = 4096  # target document size when a file has no form feeds


def split_documents(data: bytes, doc_bytes: int = DOC_BYTES) -> list[bytes]:
    """Documents of one file's bytes (whitespace-only documents dropped). Form feeds: cut there, exactly
    (``DOC_SEP.join(split_documents(x)) == x`` for the bundled corpus). Otherwise cut at the first blank line
    at least ``doc_bytes`` after the last cut; failing one within 4x that, at a line end; failing that (one
    huge line), at a UTF-8 character boundary. Documents are stripped of surrounding whitespace."""
    if b"\x0c" in data:
        parts = data.split(b"\x0c")
        parts = [p[1:] if p[:1] == b"\n" else p for p in parts]
        parts = [p[:-1] if p[-1:] == b"\n" else p for p in parts]
        return [p for p in parts if p.strip()]
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")
    nl = np.frombuffer(data, dtype=np.uint8) == 10
    blank = (np.flatnonzero(nl[:-1] & nl[1:]) + 2).tolist()  # offsets just after a blank line
    docs, start, n = [], 0, len(data)
    while start < n:
        target, limit = start + doc_bytes, start + 4 * doc_bytes
        if target >= n:
            end = n
        else:
            i = bisect.bisect_left(blank, target)
            if i < len(blank) and blank[i] <= limit:
                end = blank[i]
            elif (j := data.find(b"\n", target, limit)) >= 0:
                end = j + 1
            else:
                end = min(start + 2 * doc_bytes, n)
                while start + 1 < end < n and (data[end] & 0xC0) == 0x80:  # never split a UTF-8 character
                    end -= 1
        doc = data[start:end].strip()
        if doc:
            docs.append(doc)
        start = end
    return docs


def bundled_corpora() -> list[str]:
    """Names of the corpora shipped in the package (``text:NAME``): ``default`` (KJV + Shakespeare, for
    training) and ``xz-docs`` (public-domain technical documentation, a transfer set); see PROVENANCE*.md."""
    return sorted(p.stem for p in CORPORA.glob("*.json"))


def bundled_corpus(name: str) -> tuple[bytes, dict]:
    """A bundled corpus's text and its manifest; the checksum is verified."""
    path = CORPORA / f"{name}.json"
    if not path.is_file():
        raise InputError(f"no bundled corpus {name!r}; bundled: {', '.join(bundled_corpora())}")
    manifest = json.loads(path.read_text())
    text = gzip.decompress((CORPORA / manifest["file"]).read_bytes())
    if hashlib.sha256(text).hexdigest() != manifest["text_sha256"]:
        raise InputError(f"{CORPORA / manifest['file']} does not match its recorded sha256; rebuild it "
                         f"({manifest.get('rebuild', 'see PROVENANCE.md')})")
    return text, manifest


def default_corpus() -> tuple[bytes, dict]:
    """The bundled corpus text (KJV + Shakespeare) and its manifest; the checksum is verified."""
    return bundled_corpus("default")


def _threads() -> int:
    return int(os.environ.get("SCALINGLAB_THREADS") or os.cpu_count() or 1)


def resolve_files(source: str) -> list[Path]:
    """Files named by a path, a folder (every file below it, sorted) or a glob pattern."""
    p = Path(source).expanduser()
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
        if not files:
            raise InputError(f"text folder {p} holds no files")
        return files
    if any(c in source for c in "*?["):
        files = sorted(Path(f) for f in glob.glob(str(p), recursive=True) if Path(f).is_file())
        if not files:
            raise InputError(f"the glob {source!r} matches no file")
        return files
    raise InputError(f"text source {source!r} is not a bundled corpus ({', '.join(bundled_corpora())}), "
                     "a file, a folder or a glob")


def source_stamp(source: str) -> list:
    """A cheap identity of a user source (paths, sizes, mtimes) for the dataset cache key."""
    if source in bundled_corpora():
        return [json.loads((CORPORA / f"{source}.json").read_text())["gz_sha256"]]
    return [[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in resolve_files(source)]


def load_documents(source: str, doc_bytes: int = DOC_BYTES,
                   utf8: bool = False) -> tuple[list[bytes], list[str]]:
    """(documents, the file each came from) for 'default' or a user file / folder / glob; ``utf8`` refuses a
    file that is not valid UTF-8 (naming the file and the byte offset)."""
    if source in bundled_corpora():
        text, _ = bundled_corpus(source)
        docs = split_documents(text, doc_bytes)
        return docs, [source] * len(docs)
    def read(f: Path) -> list[bytes]:
        data = f.read_bytes()
        if utf8:
            from scalinglab.data.tokenizer import decode_utf8

            decode_utf8(data, str(f))
        return split_documents(data, doc_bytes)

    files = resolve_files(source)
    with ThreadPoolExecutor(max_workers=max(1, min(len(files), _threads()))) as pool:
        per_file = list(pool.map(read, files))  # numpy and file reads release the GIL: 2 cores help
    docs = [d for ds in per_file for d in ds]
    origin = [str(f) for f, ds in zip(files, per_file, strict=True) for _ in ds]
    if not docs:
        raise InputError(f"the text source {source!r} is empty (no non-blank text in its files)")
    return docs, origin


def build_text(spec):
    """Tokenise a text source into train/val/test streams (documents joined by ``DOC_SEP``)."""
    from scalinglab.data.build import Built, SplitData
    from scalinglab.data.splits import SPLITS, assign_splits, content_digest, doc_digests
    from scalinglab.data.tokenizer import BPETokenizer, ByteTokenizer, decode_utf8

    docs, origin = load_documents(spec.source, spec.opt("doc_bytes"), utf8=spec.opt("tokenizer") == "bpe")
    if not 0 <= spec.opt("qa") < 1:
        raise ConfigError(f"qa={spec.opt('qa')}: the share of arithmetic Q/A text must lie in [0, 1)")
    if spec.opt("qa") > 0:
        from scalinglab.data.mathgen import qa_documents

        n_bytes = sum(map(len, docs))
        qa_docs = qa_documents(int(n_bytes * spec.opt("qa") / (1 - spec.opt("qa"))), seed=spec.opt("seed"))
        docs, origin = docs + qa_docs, origin + ["qa"] * len(qa_docs)
    digests = doc_digests(docs)
    where = assign_splits(docs, spec.opt("val_frac"), spec.opt("test_frac"), digests)
    by_split = {s: [d for d, w in zip(docs, where, strict=True) if w == s] for s in SPLITS}
    kind = spec.opt("tokenizer")
    splits = {}
    if kind == "bytes":
        tok, save = ByteTokenizer(), None
        for s, ds in by_split.items():
            data = DOC_SEP.join(ds)
            lens = np.array([len(d) + len(DOC_SEP) for d in ds], dtype=np.int64)
            starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
            splits[s] = SplitData(np.frombuffer(data, dtype=np.uint8), starts, n_bytes=len(data))
    elif kind == "bpe":
        texts = {s: [] for s in SPLITS}
        for d, o, w in zip(docs, origin, where, strict=True):
            texts[w].append(decode_utf8(d, o))
        tok = BPETokenizer.train(texts["train"], spec.opt("vocab_size"))
        save = tok.save
        sep = np.array(tok.encode(DOC_SEP.decode()), dtype=np.int64)
        for s, ts in texts.items():
            enc = [np.array(ids, dtype=np.int64) for ids in tok.encode_batch(ts)]
            pieces = [p for e in enc for p in (e, sep)][:-1]
            lens = np.array([len(e) + len(sep) for e in enc], dtype=np.int64)
            starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
            n_bytes = sum(len(d) for d in by_split[s]) + len(DOC_SEP) * (len(ts) - 1)
            splits[s] = SplitData(np.concatenate(pieces), starts, n_bytes=n_bytes)
    else:
        raise ConfigError(f"tokenizer={kind!r}: use 'bytes' or 'bpe'")
    return Built(domain="text", vocab_size=tok.vocab_size, splits=splits,
                 tokenizer={"kind": tok.kind, "fingerprint": tok.fingerprint,
                            "vocab_size": tok.vocab_size},
                 split_rule={"rule": "sha256(document)[:8] / 2**64: < test_frac test, < +val_frac val",
                             "val_frac": spec.opt("val_frac"), "test_frac": spec.opt("test_frac"),
                             "doc_bytes": spec.opt("doc_bytes"), "qa": spec.opt("qa")},
                 save_tokenizer=save, content_sha=content_digest(digests, where),
                 extra={"doc_separator": DOC_SEP.decode()})
