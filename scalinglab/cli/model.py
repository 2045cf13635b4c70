"""CLI commands for model: ``scalinglab count`` (parameters and FLOPs per token under every convention)."""

from __future__ import annotations

import typer

from scalinglab.cli._app import app, print_json


@app.command("count")
def count(
    name: str = typer.Option(
        None, "--name", help="A named size: gpt2 ... gpt2-xl, gpt3-small ... gpt3-175b, llama-2-7b, "
        "llama-2-13b, llama-2-70b, llama-3-8b, llama-3-70b, mistral-7b, mixtral-8x7b, chinchilla-44m ... "
        "chinchilla-16183m (Hoffmann Table A9), chinchilla-70b."
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
    sparse_window: int = typer.Option(
        None, "--sparse-window", help="GPT: alternate dense and banded:W layers; --arch llama: a sliding "
        "window of W in every layer."
    ),
    arch: str = typer.Option(
        None, "--arch", help="gpt (GELU, LayerNorm, learned positions; the default), llama (SwiGLU, "
        "RMSNorm, RoPE, untied head; vocab 32000 and n_ctx 4096 unless given) or lstm (--n-layer, --d-model)."
    ),
    n_kv_head: int = typer.Option(None, "--n-kv-head", help="Key/value heads (grouped-query attention)."),
    experts: int = typer.Option(None, "--experts", help="Mixture of experts: experts per layer."),
    top_k: int = typer.Option(None, "--top-k", help="Mixture of experts: experts per token."),
    as_json: bool = typer.Option(
        False, "--json", help="Print JSON: {'params': {...}, 'flops_per_token': {...}}."
    ),
) -> None:
    """Parameters under every convention and training FLOPs per token (forward + backward), exact integers.
    With ``--name``, any shape flag given overrides that field of the named size."""
    from scalinglab.errors import ConfigError
    from scalinglab.model.arch import NAMED_DECODERS, DecoderConfig, named_decoder
    from scalinglab.model.config import GPTConfig, LSTMConfig, named_config
    from scalinglab.model.counting import count_params, flops_per_token

    if arch not in (None, "gpt", "llama", "lstm"):
        raise ConfigError(f"--arch {arch!r}: use gpt, llama or lstm")
    given = dict(n_layer=n_layer, d_model=d_model, n_head=n_head, vocab_size=vocab, n_ctx=ctx, d_ff=d_ff,
                 tied=tied, bias=bias)
    modern = dict(n_kv_head=n_kv_head, n_experts=experts, top_k=top_k)
    given = {k: v for k, v in given.items() if v is not None}
    modern = {k: v for k, v in modern.items() if v is not None}
    decoder = arch == "llama" or bool(modern) or (name in NAMED_DECODERS)
    if arch == "lstm":
        if name is not None or None in (n_layer, d_model) or modern:
            raise ConfigError("count --arch lstm: give --n-layer and --d-model (no --name, --n-kv-head, ...)")
        extra = sorted(set(given) - {"n_layer", "d_model", "vocab_size", "n_ctx", "tied"})
        if extra:
            raise ConfigError(f"count --arch lstm: {', '.join(extra)} apply to transformers only")
        cfg = LSTMConfig(**{"vocab_size": 50257, "n_ctx": 1024, "tied": True, **given})
    elif decoder:
        if arch == "gpt":
            raise ConfigError("--arch gpt has no --n-kv-head, --experts or --top-k (use --arch llama)")
        if sparse_window is not None:
            given["sliding_window"] = sparse_window
        if name is not None:
            cfg = named_decoder(name, **given, **modern)
        else:
            if None in (n_layer, d_model, n_head):
                raise ConfigError("count: give --name or all of --n-layer, --d-model, --n-head")
            cfg = DecoderConfig(**{"vocab_size": 32000, "n_ctx": 4096, **given, **modern})
    else:
        if sparse_window is not None:
            given["sparse_window"] = sparse_window
        if name is not None:
            cfg = named_config(name, **given)
        else:
            if None in (n_layer, d_model, n_head):
                raise ConfigError("count: give --name or all of --n-layer, --d-model, --n-head")
            cfg = GPTConfig(**{"vocab_size": 50257, "n_ctx": 1024, "tied": True, "bias": False, **given})
    out = {"config": cfg.to_dict(), "params": count_params(cfg), "flops_per_token": flops_per_token(cfg)}
    if as_json:
        print_json(out)
        return
    from rich.table import Table

    from scalinglab.cli._app import console

    heads = "LSTM" if isinstance(cfg, LSTMConfig) else f"{cfg.n_head} heads"
    t = Table(
        title=f"{cfg.n_layer} layers, d_model {cfg.d_model}, {heads}, V {cfg.vocab_size}, n_ctx {cfg.n_ctx}"
    )
    t.add_column("quantity")
    t.add_column("value", justify="right")
    for k, v in out["params"].items():
        t.add_row(f"params.{k}", f"{v:,}")
    for k, v in out["flops_per_token"].items():
        t.add_row(f"train FLOPs/token.{k}", f"{v:,}")
    console().print(t)


@app.command("shape")
def shape_cmd(
    n: float = typer.Argument(..., help="Target parameter count N."),
    params: str = typer.Option(
        "total", "--params", help="The count N means: total, non_embedding, kaplan, non_embedding_with_head."
    ),
    arch: str = typer.Option("gpt", "--arch", help="gpt (the trainer's model) or llama."),
    aspect: float = typer.Option(None, "--aspect", help="d_model / n_layer (default gpt 64, llama 128)."),
    head_dim: int = typer.Option(None, "--head-dim", help="d_model per head (default gpt 64, llama 128)."),
    vocab: int = typer.Option(None, "--vocab", help="Vocabulary (default gpt 50257, llama 32000)."),
    ctx: int = typer.Option(None, "--ctx", help="Context length (default gpt 1024, llama 4096)."),
    n_kv_head: int = typer.Option(None, "--n-kv-head", help="llama: key/value heads (must divide n_head)."),
    as_json: bool = typer.Option(False, "--json", help="Print the suggestion as JSON."),
) -> None:
    """A (n_layer, d_model, n_head) for a target N under the aspect rule, with its exact parameter count."""
    from scalinglab.errors import ConfigError
    from scalinglab.model.shapes import suggest_shape

    llama = arch == "llama"
    kw = {"n_kv_head": n_kv_head} if n_kv_head is not None else {}
    if kw and not llama:
        raise ConfigError("--n-kv-head needs --arch llama")
    s = suggest_shape(n, params=params, arch=arch, aspect=aspect or (128.0 if llama else 64.0),
                      head_dim=head_dim or (128 if llama else 64),
                      vocab_size=vocab or (32000 if llama else 50257), n_ctx=ctx or (4096 if llama else 1024),
                      **kw)
    if as_json:
        print_json(s.to_dict())
        return
    from scalinglab.cli._app import console

    console().print(f"N = {n:.4g} ({arch}): n_layer {s.n_layer}, d_model {s.d_model}, n_head {s.n_head} "
                    f"-> exactly {s.n_params:,} parameters ({params}; {100 * s.rel_error:+.2f} %), "
                    f"aspect {s.aspect:.0f}", highlight=False)
