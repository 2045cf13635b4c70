"""CLI commands for model: ``scalinglab count`` (parameters and FLOPs per token under every convention)."""

from __future__ import annotations

import typer

from scalinglab.cli._app import app, print_json


@app.command("count")
def count(
    name: str = typer.Option(
        None, "--name", help="A named size (gpt2, gpt2-medium, gpt3-small ... gpt3-175b)."
    ),
    n_layer: int = typer.Option(None, "--n-layer", help="Transformer blocks."),
    d_model: int = typer.Option(None, "--d-model", help="Residual width."),
    n_head: int = typer.Option(None, "--n-head", help="Attention heads."),
    vocab: int = typer.Option(50257, "--vocab", help="Vocabulary size."),
    ctx: int = typer.Option(1024, "--ctx", help="Context length n_ctx (tokens)."),
    d_ff: int = typer.Option(None, "--d-ff", help="MLP width (default 4 d_model)."),
    untied: bool = typer.Option(
        False, "--untied", help="Separate output head (default: tied to the embedding)."
    ),
    bias: bool = typer.Option(False, "--bias", help="Biases in linear layers and LayerNorms."),
    sparse_window: int = typer.Option(None, "--sparse-window", help="Alternate dense and banded:W layers."),
    as_json: bool = typer.Option(
        False, "--json", help="Print JSON: {'params': {...}, 'flops_per_token': {...}}."
    ),
) -> None:
    """Parameters under every convention and training FLOPs per token (forward + backward), exact integers."""
    from scalinglab.errors import ConfigError
    from scalinglab.model.config import GPTConfig, named_config
    from scalinglab.model.counting import count_params, flops_per_token

    if name is not None:
        cfg = named_config(name)
    else:
        if None in (n_layer, d_model, n_head):
            raise ConfigError("count: give --name or all of --n-layer, --d-model, --n-head")
        cfg = GPTConfig(
            n_layer=n_layer,
            d_model=d_model,
            n_head=n_head,
            vocab_size=vocab,
            n_ctx=ctx,
            d_ff=d_ff,
            tied=not untied,
            bias=bias,
            sparse_window=sparse_window,
        )
    out = {"config": cfg.to_dict(), "params": count_params(cfg), "flops_per_token": flops_per_token(cfg)}
    if as_json:
        print_json(out)
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(
        title=f"{cfg.n_layer} layers, d_model {cfg.d_model}, {cfg.n_head} heads, V {cfg.vocab_size}, "
        f"n_ctx {cfg.n_ctx}"
    )
    t.add_column("quantity")
    t.add_column("value", justify="right")
    for k, v in out["params"].items():
        t.add_row(f"params.{k}", f"{v:,}")
    for k, v in out["flops_per_token"].items():
        t.add_row(f"train FLOPs/token.{k}", f"{v:,}")
    Console().print(t)
