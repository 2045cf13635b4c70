"""The laws engine in one screen: fit Chinchilla's form to the Epoch data, compare with the published
replication, allocate compute, and ask Kaplan's and Hoffmann's laws the same questions.

    python examples/laws_demo.py [path/to/chinchilla_epoch_svg_extracted.csv]
"""

from __future__ import annotations

import sys
from pathlib import Path

from scalinglab.laws import allocate as al
from scalinglab.laws import presets
from scalinglab.laws.data import read_table
from scalinglab.laws.fit import fit

default = Path(__file__).resolve().parents[2] / "shared" / "data" / "chinchilla_epoch_svg_extracted.csv"
path = Path(sys.argv[1]) if len(sys.argv) > 1 else default
if path.is_file():
    runs = read_table(path)
    res = fit(
        "chinchilla",
        runs,
        columns={"N": "Model Size", "C": "Training FLOP"},
        drop_highest=5,
        bootstrap=1000,
        seed=42,
    )
    print(res.summary())
    pub = presets.get_preset("besiroglu2024")
    print("published (Besiroglu 2024):", {k: f"{v:g} ({pub.se[k]:g})" for k, v in pub.params.items()})
    a = al.allocate(5.76e23, res)
    print(
        f"at Chinchilla's 5.76e23 FLOPs this fit says N = {a.N_opt:.3g}, D = {a.D_opt:.3g} "
        f"({a.D_opt / a.N_opt:.1f} tokens/param), loss {a.loss:.3f} nats/token"
    )
else:
    print(f"(no data at {path}: skipping the fit)")

for law in ("hoffmann2022", "besiroglu2024", "kaplan2020-ND", "kaplan2020-frontier"):
    a = al.allocate(1e24, law)
    extra = f", B = {a.B:.3g} tokens, S = {a.S:.3g} steps" if a.B is not None else ""
    print(f"1e24 FLOPs with {law:20s}: N = {a.N_opt:.3g}, D = {a.D_opt:.3g}, loss {a.loss:.3f}{extra}")
c = al.kaplan_contradiction()
print(
    f"Kaplan's contradiction point: C* = {c['C_pfdays']:.3g} PF-days, N* = {c['N']:.2g}, D* = {c['D']:.2g}, "
    f"L* = {c['L']:.2f} nats/token (paper: ~1e4 PF-days, 1e12, 1e12, 1.7)"
)
g = al.gpt_infinity(1e36)
print(
    f"GPT-infinity at 1e36 FLOPs: N = {g['N_opt']:.3g}, D = {g['D_opt']:.3g}, loss {g['loss']:.4f} "
    f">= E = {g['loss_bound_E']} nats/token"
)
