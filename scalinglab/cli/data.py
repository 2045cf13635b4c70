"""CLI commands for data: ``scalinglab data prepare SPEC --out DIR`` and ``scalinglab data info DIR``."""

from __future__ import annotations

from pathlib import Path

import typer

from scalinglab.cli._app import app, print_json

data_app = typer.Typer(help="Prepare and inspect token datasets (text, 8x8 images, math).",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")


def _parse_opts(opts: list[str]) -> dict:
    from scalinglab.errors import ConfigError

    out = {}
    for o in opts:
        k, sep, v = o.partition("=")
        if not sep:
            raise ConfigError(f"--opt {o!r}: expected KEY=VALUE")
        out[k] = v
    return out


@data_app.command("prepare")
def prepare_cmd(
    spec: str = typer.Argument(..., help="text:default | text:/path/*.txt | image:digits8 | math:arith ..."),
    out: Path = typer.Option(None, "--out", "-o", help="folder to write (created atomically); default: the "
                             "dataset cache ($SCALINGLAB_CACHE/data), as the trainer would"),
    tokenizer: str = typer.Option(None, help="text: bytes (default) or bpe"),
    vocab_size: int = typer.Option(None, help="text with --tokenizer bpe: vocabulary size"),
    opt: list[str] = typer.Option([], "--opt", help="further spec option KEY=VALUE (repeatable)"),
    force: bool = typer.Option(False, help="replace an existing folder"),
    json_out: bool = typer.Option(False, "--json", help="print the dataset info as JSON"),
) -> None:
    """Tokenise a corpus into train/val/test shards."""
    from scalinglab.data import prepare

    opts = _parse_opts(opt)
    if tokenizer is not None:
        opts["tokenizer"] = tokenizer
    if vocab_size is not None:
        opts["vocab_size"] = vocab_size
    if out is None:
        from scalinglab.data import ensure_dataset, open_dataset
        from scalinglab.data.spec import parse_spec

        info = open_dataset(ensure_dataset(str(parse_spec(spec, **opts)))).info()
    else:
        info = prepare(spec, out, force=force, **opts)
    _show(info, json_out)


@data_app.command("info")
def info_cmd(
    path: str = typer.Argument(..., help="a prepared folder (or a spec, prepared into the cache)"),
    json_out: bool = typer.Option(False, "--json", help="JSON: {tokens: {train, val, test}, vocab_size, "
                                  "fingerprint, ...}"),
) -> None:
    """Token counts, vocabulary and fingerprint of a prepared dataset."""
    from scalinglab.data import open_dataset

    _show(open_dataset(path).info(), json_out)


def _show(info, json_out: bool) -> None:
    if json_out:
        print_json(info.to_json())
        return
    from rich.table import Table

    from scalinglab.cli._app import console

    t = Table(title=f"{info.spec}  ({info.path})")
    t.add_column("split")
    t.add_column("tokens", justify="right")
    t.add_column("bytes/token", justify="right")
    for k, v in {**info.tokens, **info.extra_splits}.items():
        bpt = info.bytes_per_token.get(k)
        t.add_row(k, f"{v:,}", "-" if bpt is None else f"{bpt:.3f}")
    c = console()
    c.print(t)
    c.print(f"domain {info.domain}  tokenizer {info.tokenizer}  vocab {info.vocab_size}  "
            f"record_len {info.record_len}  fingerprint {info.fingerprint}")
