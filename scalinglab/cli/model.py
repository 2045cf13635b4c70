"""CLI commands for model: ``scalinglab count`` (parameters and FLOPs per token under every convention)."""

from __future__ import annotations

import typer

from scalinglab.cli._app import app, print_json


@app.command("count")
def count(
    name: str = typer.Option(
        None, "--name", help="A named size (gpt2, gpt2-medium, gpt3-small ... gpt3-175b)."
    ),
    arch: str = typer.Option(
        "gpt", "--arch", help="Model family: gpt | lstm (--n-layer, --d-model, --vocab)."
    ),
    n_layer: int = typer.Option(None, "--n-layer", help="Transformer blocks."),
    d_model: int = typer.Option(None, "--d-model", help="Residual width."),
    n_head: int = typer.Option(None, "--n-head", help="Attention heads."),
    vocab: int = typer.Option(None, "--vocab", help="Vocabulary size (default 50257)."),
    ctx: int = typer.Option(None, "--ctx", help="Context length n_ctx in tokens (default 1024)."),
    d_ff: int = typer.Option(None, "--d-ff", help="MLP width (default 4 d_model)."),
    tied: bool = typer.Option(
        None, "--tied/--untied", help="Output head tied to the embedding (default) or separate."
    ),
    bias: bool = typer.Option(None, "--bias/--no-bias", help="Biases in linear layers and LayerNorms."),
    sparse_window: int = typer.Option(None, "--sparse-window", help="Alternate dense and banded:W layers."),
    as_json: bool = typer.Option(
        False, "--json", help="Print JSON: {'params': {...}, 'flops_per_token': {...}}."
    ),
) -> None:
    """Parameters under every convention and training FLOPs per token (forward + backward), exact integers.
    With ``--name``, any shape flag given overrides that field of the named size."""
    from scalinglab.errors import ConfigError
    from scalinglab.model.config import GPTConfig, LSTMConfig, named_config
    from scalinglab.model.counting import count_params, flops_per_token

    given = dict(n_layer=n_layer, d_model=d_model, n_head=n_head, vocab_size=vocab, n_ctx=ctx, d_ff=d_ff,
                 tied=tied, bias=bias, sparse_window=sparse_window)
    given = {k: v for k, v in given.items() if v is not None}
    if arch == "lstm":
        if name is not None or None in (n_layer, d_model):
            raise ConfigError("count --arch lstm: give --n-layer and --d-model (no --name)")
        extra = sorted(set(given) - {"n_layer", "d_model", "vocab_size", "n_ctx", "tied"})
        if extra:
            raise ConfigError(f"count --arch lstm: {', '.join(extra)} apply to gpt only")
        cfg = LSTMConfig(**{"vocab_size": 50257, "n_ctx": 1024, "tied": True, **given})
    elif arch != "gpt":
        raise ConfigError(f"--arch {arch!r}: allowed gpt or lstm")
    elif name is not None:
        cfg = named_config(name, **given)
    else:
        if None in (n_layer, d_model, n_head):
            raise ConfigError("count: give --name or all of --n-layer, --d-model, --n-head")
        cfg = GPTConfig(**{"vocab_size": 50257, "n_ctx": 1024, "tied": True, "bias": False, **given})
    out = {"config": cfg.to_dict(), "params": count_params(cfg), "flops_per_token": flops_per_token(cfg)}
    if as_json:
        print_json(out)
        return
    from rich.console import Console
    from rich.table import Table

    heads = f"{cfg.n_head} heads" if isinstance(cfg, GPTConfig) else "LSTM"
    t = Table(
        title=f"{cfg.n_layer} layers, d_model {cfg.d_model}, {heads}, V {cfg.vocab_size}, n_ctx {cfg.n_ctx}"
    )
    t.add_column("quantity")
    t.add_column("value", justify="right")
    for k, v in out["params"].items():
        t.add_row(f"params.{k}", f"{v:,}")
    for k, v in out["flops_per_token"].items():
        t.add_row(f"train FLOPs/token.{k}", f"{v:,}")
    Console().print(t)
