"""Export a scalinglab GPT to the Hugging Face format (``GPT2LMHeadModel`` + tokenizer) for other tools.

Weight mapping (our ``nn.Linear`` weights are ``[out, in]``; GPT-2's ``Conv1D`` stores ``[in, out]``):
``wte``/``wpe`` -> ``transformer.wte``/``wpe``; per block ``ln_1``, ``attn.qkv`` -> ``attn.c_attn`` (Q, K, V
fused in the same order), ``attn.proj`` -> ``attn.c_proj``, ``ln_2``, ``mlp.fc`` -> ``mlp.c_fc``,
``mlp.proj`` -> ``mlp.c_proj``; ``ln_f``; ``lm_head``. Missing biases (``bias=False``) become zeros; GELU
maps to ``gelu`` (exact) or ``gelu_new`` (tanh approximation) as the config says. Only dense attention with
``d_head * n_head == d_model`` maps onto GPT-2. The tokenizer: byte models get a byte-level
``PreTrainedTokenizerFast`` (id = byte value); BPE models their own ``tokenizers`` model. The end-of-text
token is the newline token (our tokenizers have none).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scalinglab.errors import InputError

_HF_ACT = {"gelu": "gelu", "gelu_tanh": "gelu_new"}  # exact erf GELU / GPT-2's tanh approximation


def to_hf(gpt: Any, eos_id: int = 10):
    """A ``transformers.GPT2LMHeadModel`` computing the same logits as ``gpt`` (float32); ``eos_id`` is the
    end-of-text id written into the config (the newline token)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = gpt.cfg
    if getattr(cfg, "arch", "gpt") != "gpt":
        raise InputError(f"HF export: a {cfg.arch} model has no GPT-2 equivalent; only transformers export")
    if any(w is not None for w in cfg.windows()):
        raise InputError("HF export: banded (sparse) attention layers have no GPT-2 equivalent; "
                         "only all-dense models can be exported")
    if cfg.d_attn != cfg.d_model:
        raise InputError(f"HF export: d_head * n_head = {cfg.d_attn} != d_model = {cfg.d_model}; "
                         "GPT-2 needs them equal")
    hf_cfg = GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.n_ctx, n_embd=cfg.d_model,
                        n_layer=cfg.n_layer, n_head=cfg.n_head, n_inner=cfg.ff,
                        activation_function=_HF_ACT[getattr(cfg, "activation", "gelu_tanh")],
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5,
                        tie_word_embeddings=bool(cfg.tied), bos_token_id=eos_id, eos_token_id=eos_id)
    hf = GPT2LMHeadModel(hf_cfg).eval()
    sd = {k: v.detach().float().cpu() for k, v in gpt.state_dict().items()}

    def lin(prefix: str) -> tuple[Any, Any]:
        w = sd[prefix + ".weight"]
        b = sd.get(prefix + ".bias", torch.zeros(w.shape[0]))
        return w.t().contiguous(), b

    def ln(prefix: str) -> tuple[Any, Any]:
        w = sd[prefix + ".weight"]
        return w, sd.get(prefix + ".bias", torch.zeros_like(w))

    out = {"transformer.wte.weight": sd["wte.weight"], "transformer.wpe.weight": sd["wpe.weight"],
           "lm_head.weight": sd["lm_head.weight"]}
    for i in range(cfg.n_layer):
        p, h = f"blocks.{i}.", f"transformer.h.{i}."
        for ours, theirs, fn in (("ln_1", "ln_1", ln), ("ln_2", "ln_2", ln), ("attn.qkv", "attn.c_attn", lin),
                                 ("attn.proj", "attn.c_proj", lin), ("mlp.fc", "mlp.c_fc", lin),
                                 ("mlp.proj", "mlp.c_proj", lin)):
            w, b = fn(p + ours)
            out[h + theirs + ".weight"], out[h + theirs + ".bias"] = w, b
    out["transformer.ln_f.weight"], out["transformer.ln_f.bias"] = ln("ln_f")
    missing, unexpected = hf.load_state_dict(out, strict=False)
    missing = [m for m in missing if not m.endswith("attn.bias") and not m.endswith("masked_bias")]
    if missing or unexpected:
        raise InputError(f"HF export: weight mapping incomplete (missing {missing}, unexpected {unexpected})")
    return hf


def hf_tokenizer(tokenizer: Any):
    """A ``PreTrainedTokenizerFast`` with the same ids as our byte or BPE tokenizer; eos = newline token."""
    from transformers import PreTrainedTokenizerFast

    from scalinglab.evals.hf import bytes_to_unicode

    kind = getattr(tokenizer, "kind", "")
    if kind == "bytes":
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        vocab = {ch: b for b, ch in bytes_to_unicode().items()}
        tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        tok.decoder = decoders.ByteLevel()
    elif kind == "bpe":
        tok = tokenizer._tok
    else:
        raise InputError(f"HF export: tokenizer kind {kind!r} is not text (bytes or bpe)")
    nl = tok.id_to_token(tokenizer.encode("\n")[0])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=nl, bos_token=nl)


def export_hf(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Write ``out_dir`` (config.json, model.safetensors, tokenizer files) from a trained run; returns it.
    The folder is written under a temporary name and renamed when complete."""
    import shutil

    from scalinglab.evals.native import ScalingLabLM

    out = Path(out_dir)
    if out.exists():
        raise InputError(f"{out} already exists; choose a new folder for the export")
    lm = ScalingLabLM.from_run(run_dir)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        to_hf(lm.model, eos_id=lm.eot_token_id).save_pretrained(tmp)
        hf_tokenizer(lm.tokenizer).save_pretrained(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    tmp.rename(out)
    return out
