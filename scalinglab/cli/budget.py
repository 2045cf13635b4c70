"""Allocation beyond the compute-optimal point: ``allocate --inference-tokens / --unique-tokens / --shape``
(the extra tables, built here and printed after allocate's own) and ``scalinglab tokens-needed``.

The maths lives in ``scalinglab.laws.overtrain`` (Sardana et al. 2024), ``scalinglab.laws.repeat``
(Muennighoff et al. 2023) and ``scalinglab.model.shapes``.
"""

from __future__ import annotations

from typing import Any

import typer

from scalinglab.cli._app import app, console, print_json


def shape_convention(law_label: str) -> str:
    """The parameter count a law's N means: Kaplan's laws count non-embedding matrices, the Chinchilla-form
    presets and fits every parameter."""
    return "kaplan" if str(law_label).startswith("kaplan") else "total"


def allocate_extras(
    c: float,
    law: Any,
    alloc: Any,
    *,
    inference_tokens: float | None = None,
    unique_tokens: float | None = None,
    rd_star: float | None = None,
    shape: str | None = None,
) -> dict[str, Any]:
    """The answers ``allocate`` adds on request, as JSON-ready dicts under ``inference``, ``repeat`` and
    ``shape`` (nothing requested: an empty dict)."""
    from scalinglab.errors import InputError

    out: dict[str, Any] = {}
    if inference_tokens is not None:
        from scalinglab.laws.overtrain import inference_optimal

        out["inference"] = inference_optimal(C=c, inference_tokens=inference_tokens, law=law).to_dict()
    if unique_tokens is not None:
        from scalinglab.laws.repeat import repeat_allocate

        out["repeat"] = repeat_allocate(c, unique_tokens, law, rd_star=rd_star).to_dict()
    elif rd_star is not None:
        raise InputError("--rd-star needs --unique-tokens")
    if shape is not None:
        from scalinglab.model.shapes import suggest_shape

        conv = shape_convention(alloc.law)
        n = out["repeat"]["N"] if "repeat" in out else alloc.N_opt
        kw = (
            {"aspect": 128.0, "head_dim": 128, "vocab_size": 32000, "n_ctx": 4096} if shape == "llama" else {}
        )
        out["shape"] = suggest_shape(n, params=conv, arch=shape, **kw).to_dict()
    return out


def print_extras(extra: dict[str, Any], con=None) -> None:
    """Print the tables of ``allocate_extras``."""
    from rich.table import Table

    con = con or console()
    if "inference" in extra:
        e = extra["inference"]
        t = Table(
            title=f"Least lifetime cost at loss {e['loss']:.4f} nats/token serving "
            f"{e['inference_tokens']:.3g} tokens ({e['law']})"
        )
        for col in (
            "model",
            "N (params)",
            "D (tokens)",
            "D/N",
            "train FLOPs",
            "inference FLOPs",
            "total FLOPs",
        ):
            t.add_column(col, justify="right" if col != "model" else "left")
        for name, key in (("inference-optimal", "optimal"), ("Chinchilla-optimal", "chinchilla")):
            r = e[key]
            t.add_row(
                name,
                f"{r['N']:.4g}",
                f"{r['D']:.4g}",
                f"{r['tokens_per_param']:.3g}",
                f"{r['train_flops']:.4g}",
                f"{r['inference_flops']:.4g}",
                f"{r['total_flops']:.4g}",
            )
        con.print(t)
        con.print(
            f"saving: {e['saving_flops']:.3g} FLOPs ({100 * e['saving_frac']:.1f} % of the Chinchilla "
            "model's lifetime cost)",
            highlight=False,
        )
        for n in e["notes"]:
            con.print(f"note: {n}", highlight=False, markup=False)
    if "repeat" in extra:
        r = extra["repeat"]
        t = Table(
            title=f"{r['U']:.3g} unique tokens at C = {r['C']:.4g} FLOPs (data-constrained law, "
            f"R_D* = {r['rd_star']:.4g})"
        )
        for col in (
            "epochs",
            "N (params)",
            "D (tokens)",
            "effective data D'/D",
            "last repeat's worth",
            "loss (nats/token)",
        ):
            t.add_column(col, justify="right")
        t.add_row(
            f"{r['epochs']:.3g} (optimum)", f"{r['N']:.4g}", f"{r['D']:.4g}", "", "", f"{r['loss']:.4f}"
        )
        for row in r["by_epochs"]:
            t.add_row(
                f"{row['epochs']:g}",
                f"{row['N']:.4g}",
                f"{row['D']:.4g}",
                f"{100 * row['effective_data_frac']:.1f} %",
                f"{100 * row['last_token_value']:.1f} %",
                f"{row['loss']:.4f}",
            )
        con.print(t)
        u = r["unlimited"]
        con.print(
            f"with unlimited unique data: N {u['N']:.4g}, D {u['D']:.4g} ({u['epochs']:.3g} epochs of "
            f"these U), loss {u['loss']:.4f}; worth it up to ~{r['epochs']:.3g} epochs at this budget "
            f"(a repeated token is worth half a fresh one from epoch {r['epochs_half_value']:.1f})",
            highlight=False,
        )
        for n in r["notes"]:
            con.print(f"note: {n}", highlight=False, markup=False)
    if "shape" in extra:
        s = extra["shape"]
        con.print(
            f"shape for N = {s['target']:.4g} ({s['arch']}): n_layer {s['n_layer']}, d_model {s['d_model']}, "
            f"n_head {s['n_head']} -> exactly {s['n_params']:,} parameters ({s['convention']}; "
            f"{100 * s['rel_error']:+.2f} %), aspect d_model/n_layer {s['aspect']:.0f}",
            highlight=False,
        )


@app.command("tokens-needed")
def tokens_needed_cmd(
    n: float = typer.Option(..., "--n", help="Model size N in parameters (the law's convention)."),
    loss: float = typer.Option(..., "--loss", help="Target loss in nats/token."),
    law: str = typer.Option("hoffmann2022", "--law", help="An L(N,D) preset or a fit JSON."),
    as_json: bool = typer.Option(False, "--json", help='Print {"D": tokens, ...}.'),
) -> None:
    """Training tokens a model of size N needs to reach a loss (under an L(N, D) law)."""
    from scalinglab.cli.laws import _load_law
    from scalinglab.laws.overtrain import tokens_for_loss

    d = tokens_for_loss(n, loss, _load_law(law))
    out = {"N": n, "loss": loss, "D": d, "tokens_per_param": d / n, "train_flops": 6.0 * n * d, "law": law}
    if as_json:
        print_json(out)
        return
    console().print(
        f"N = {n:.4g} reaches loss {loss:g} nats/token after D = {d:.4g} tokens ({d / n:.3g} per "
        f"parameter, 6ND = {6 * n * d:.4g} FLOPs) under {law}",
        highlight=False,
    )
