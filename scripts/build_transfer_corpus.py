"""Build the bundled transfer corpus behind ``text:xz-docs`` (build time only; never run at train time).

A second real text distribution, distinct in style from ``text:default`` (KJV + Shakespeare): modern
technical English (a FAQ, a project history, two file-format specifications, a README and a TODO list), for
Kaplan et al. 2020's transfer experiment (Fig. 8: loss on other distributions vs N). The text is the XZ Utils
documentation as Debian installs it (packages ``xz-utils`` and ``liblzma-dev``, upstream 5.4.1), which its
author placed in the public domain (Debian's ``/usr/share/doc/liblzma-dev/copyright``: "Files: *
... License: PD / This file has been put in the public domain. You can do whatever you want with this file.",
and the upstream note quoted there that AUTHORS, ChangeLog, COPYING, README, THANKS, TODO are PD). ``NEWS`` is
listed as only "probably-PD" there and is left out, as are the ChangeLog (a git log of many authors) and
anything under another licence.

Output: ``scalinglab/data/corpora/xz-docs.txt.gz`` (documents of whole paragraphs of >= 4 KB, joined by a
line holding a form feed; gzip mtime 0, so byte-for-byte reproducible), ``xz-docs.json`` (sizes and sha256 of
every source file and of the output, checked on every build of ``text:xz-docs``) and
``PROVENANCE-xz-docs.md``.

Usage:  python scripts/build_transfer_corpus.py [--doc-dir /usr/share/doc]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scalinglab.data.text import DOC_SEP, split_documents  # noqa: E402

OUT_DIR = REPO / "scalinglab" / "data" / "corpora"
# (path under the doc folder, what it is); every one "Files: *, License: PD" in Debian's copyright file
FILES = [
    ("xz-utils/faq.txt.gz", "XZ Utils FAQ"),
    ("xz-utils/history.txt.gz", "History of LZMA Utils and XZ Utils"),
    ("xz-utils/README.gz", "XZ Utils README"),
    ("liblzma-dev/xz-file-format.txt.gz", "The .xz File Format specification 1.1.0"),
    ("liblzma-dev/lzma-file-format.txt.gz", "The .lzma File Format"),
    ("liblzma-dev/TODO", "XZ Utils To-Do List"),
]
COPYRIGHT = "liblzma-dev/copyright"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def provenance_md(m: dict) -> str:
    rows = "\n".join(
        f"| `/usr/share/doc/{f['file']}` | {f['title']} | {f['bytes']:,} | `{f['sha256']}` |" for f in m["sources"]
    )
    return f"""# Provenance of the bundled transfer corpus (`text:xz-docs`)

`xz-docs.txt.gz` holds {m['documents']:,} documents ({m['text_bytes']:,} bytes of UTF-8 text; {m['gz_bytes']:,}
bytes compressed), joined by a line holding a form feed (`\\n\\f\\n`): the XZ Utils documentation (upstream
5.4.1) as installed by the Debian packages `xz-utils` and `liblzma-dev`, cut into documents of whole
paragraphs of >= 4 KB (`scalinglab.data.text.split_documents`). It is modern technical English (a FAQ, a
project history, two binary file-format specifications, a README, a to-do list): a distribution distinct in
style from the training corpus `text:default` (KJV Bible + Shakespeare), for the transfer experiment of
Kaplan et al. 2020 (sec. 3.2.2, Fig. 8). Study plans name it in `[eval] sets = ["text:xz-docs"]`.

Licence: public domain. Debian's `/usr/share/doc/liblzma-dev/copyright` lists these files under
"Files: * ... License: PD: This file has been put in the public domain. You can do whatever you want with
this file.", and quotes the author (Lasse Collin, 2009) that the README, TODO and the other XZ Utils
specific documentation are in the public domain. Left out: `NEWS` (listed as only "probably-PD"), the
ChangeLog (a git log of many authors) and every file under another licence.

| source | what | bytes | sha256 |
|---|---|---:|---|
{rows}

Checksums: text sha256 `{m['text_sha256']}`; gz sha256 `{m['gz_sha256']}` (also in `xz-docs.json`, checked
on every build of `text:xz-docs`). Rebuild (byte-for-byte identical; gzip mtime 0):
`python scripts/build_transfer_corpus.py` on a Debian 12 machine with `xz-utils` and `liblzma-dev` installed.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--doc-dir", type=Path, default=Path("/usr/share/doc"))
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    args = ap.parse_args()
    if "License: PD" not in (args.doc_dir / COPYRIGHT).read_text():
        raise SystemExit(f"{args.doc_dir / COPYRIGHT} does not state the public-domain licence")
    docs, sources = [], []
    for rel, title in FILES:
        raw = read(args.doc_dir / rel)
        raw.decode("utf-8")  # refuse anything that is not UTF-8 text
        for d in split_documents(raw.replace(b"\x0c", b"")):
            docs.append(d)
        sources.append({"file": rel, "title": title, "bytes": len(raw), "sha256": sha256(raw)})
    text = DOC_SEP.join(docs)
    buf = io.BytesIO()
    with gzip.GzipFile(filename="xz-docs.txt", mode="wb", compresslevel=9, fileobj=buf, mtime=0) as gz:
        gz.write(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "xz-docs.txt.gz").write_bytes(buf.getvalue())
    manifest = {
        "name": "xz-docs",
        "file": "xz-docs.txt.gz",
        "documents": len(docs),
        "text_bytes": len(text),
        "text_sha256": sha256(text),
        "gz_bytes": len(buf.getvalue()),
        "gz_sha256": sha256(buf.getvalue()),
        "document_separator": DOC_SEP.decode(),
        "licence": "public domain (XZ Utils documentation; Debian liblzma-dev copyright: Files: *, License: PD)",
        "sources": sources,
        "rebuild": "python scripts/build_transfer_corpus.py",
    }
    (args.out / "xz-docs.json").write_text(json.dumps(manifest, indent=1) + "\n")
    (args.out / "PROVENANCE-xz-docs.md").write_text(provenance_md(manifest))
    print(f"{len(docs)} documents, {len(text) / 1e3:.1f} kB text -> {len(buf.getvalue()) / 1e3:.1f} kB gz")


if __name__ == "__main__":
    main()
