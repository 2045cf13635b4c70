"""The report page: one self-contained HTML file (inline CSS, figures as base64 PNG, no external resources).

A 6-line inline script marks ``<body data-images-loaded="k/n">`` once the page has loaded, so a headless
browser can check that every figure decoded. The page reads fine without it.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field

import pandas as pd

from scalinglab.report.answer import Answer
from scalinglab.report.style import fmt_num, fmt_si
from scalinglab.report.tables import FitRow, Predictions

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#1d1d1f;margin:0;
background:#fafafa}
main{max-width:1100px;margin:0 auto;padding:18px 28px 60px;background:#fff}
h1{font-size:1.6em;margin:.2em 0}
h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:3px}
.meta{color:#666;font-size:.9em}nav a{margin-right:12px;font-size:.9em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}
th,td{border-bottom:1px solid #e4e4e4;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(480px,1fr));gap:14px}
.figs figure.wide{grid-column:1/-1}figure{margin:0;padding:8px;border:1px solid #eee;border-radius:4px}
figure img{max-width:100%;height:auto;display:block}
figcaption{font-size:.88em;color:#333;margin-top:4px}figcaption .links{color:#888}
.advice li{margin:.35em 0}.bad{color:#b00020;font-weight:600}.good{color:#1b5e20}.warn{color:#8a5a00}
.skipped li{color:#555}details{margin:.8em 0}code{font-size:.92em}
pre{font-size:.82em;background:#f6f6f6;padding:8px;overflow-x:auto}
"""

SCRIPT = """window.addEventListener('load',function(){var im=document.images,ok=0;
for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0)ok++;}
document.body.setAttribute('data-images-loaded',ok+'/'+im.length);});"""


@dataclass
class FigureOut:
    name: str
    title: str
    caption: str
    png: bytes
    notes: list[str] = field(default_factory=list)
    wide: bool = False


def _e(s: object) -> str:
    return html.escape(str(s), quote=True)


def _figure(f: FigureOut) -> str:
    data = base64.b64encode(f.png).decode("ascii")
    notes = " ".join(_e(n) for n in f.notes)
    wide = ' class="wide"' if f.wide else ""
    return (
        f'<figure id="fig-{_e(f.name)}"{wide}><img alt="{_e(f.title)}" src="data:image/png;base64,{data}">'
        f"<figcaption><b>{_e(f.title)}.</b> {_e(f.caption)} {notes} <span class=links>"
        f'(<a href="figures/{_e(f.name)}.png">PNG</a>, <a href="figures/{_e(f.name)}.pdf">PDF</a>)'
        "</span></figcaption></figure>"
    )


def _fits_table(rows: list[FitRow]) -> str:
    out = [
        "<table><tr><th>law</th><th>form</th><th>parameters [95% interval]</th><th>points</th>"
        "<th>R&sup2; (log)</th><th>verdict</th><th>source</th><th>warnings</th></tr>"
    ]
    for r in rows:
        ps = "<br>".join(f"<code>{_e(k)}</code> = {_e(v)}" for k, v in r.params) or "&ndash;"
        cls = "good" if r.verdict == "converged" else "bad" if r.verdict.startswith("NOT") else "warn"
        warn = "<br>".join(_e(w) for w in r.warnings) or "&ndash;"
        out.append(
            f"<tr><td>{_e(r.title)}</td><td><code>{_e(r.form)}</code></td><td>{ps}</td>"
            f"<td class=num>{r.n_points or ''}</td><td class=num>{_e(r.r2_log)}</td>"
            f"<td class={cls}>{_e(r.verdict)}</td><td>{_e(r.source)}</td><td>{warn}</td></tr>"
        )
    out.append("</table>")
    return "".join(out)


def _interval(v: float, lo: float, hi: float, fmt) -> str:
    s = fmt(v)
    if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi):
        s += f" <span class=meta>[{fmt(lo)}, {fmt(hi)}]</span>"
    return s


def _loss(x: float) -> str:
    return f"{x:.3f}"


def _tpp(x: float) -> str:
    return f"{x:.3g}"


def _predictions(p: Predictions) -> str:
    if len(p.table) == 0:
        return f"<p class=bad>No predictions: {_e(p.why_not)}.</p>"
    out = [
        "<table><tr><th>budget</th><th>C, FLOPs</th><th>N_opt, parameters</th><th>D_opt, tokens</th>"
        "<th>D/N, tokens per parameter</th><th>predicted loss, nats/token</th></tr>"
    ]
    for _, r in p.table.iterrows():
        loss = (_interval(r["loss"], r["loss_lo"], r["loss_hi"], _loss) if math.isfinite(r["loss"])
                else f"<span class=bad>refused</span>: {_e(r['loss_refused'])}")
        out.append(
            f"<tr><td>{r['factor']:.4g}x largest run</td><td class=num>{r['C']:.3g}</td>"
            f"<td class=num>{_interval(r['N_opt'], r['N_lo'], r['N_hi'], fmt_si)}</td>"
            f"<td class=num>{_interval(r['D_opt'], r['D_lo'], r['D_hi'], fmt_si)}</td>"
            f"<td class=num>{_interval(r['tpp'], r['tpp_lo'], r['tpp_hi'], _tpp)}</td>"
            f"<td class=num>{loss}</td></tr>"
        )
    out.append("</table>")
    note = (" [low, high]: 95 % bootstrap intervals (the loss: of a new run trained there); the functional "
            "form itself is assumed.")
    out.append("<p>" + _e(p.sentence + note) + "</p>")
    if p.notes:
        out.append("<ul>" + "".join(f"<li class=warn>{_e(n)}</li>" for n in p.notes) + "</ul>")
    return "".join(out)


def _bt(ap: dict) -> str:
    bt = ap.get("backtest")
    if bt is None:
        return f"no back-test: {_e(ap.get('backtest_error') or 'not run')}"
    pr = bt["predicted"]
    s = (f"at C = {bt['C']:.3g}: N_opt {fmt_si(pr['N_opt'])} vs {fmt_si(bt['N_measured'])} measured "
         f"({100 * bt['N_rel_error']:+.0f}%)")
    if bt.get("loss_rel_error") is not None:
        out = ", <span class=bad>outside its interval</span>"
        cov = {None: "", True: ", inside its interval", False: out}
        s += (f"; loss {pr['loss']:.4f} vs best run {bt['loss_measured']:.4f} "
              f"({100 * bt['loss_rel_error']:+.2f}%{cov[bt.get('loss_covered')]})")
    return s


def _answer(ans: Answer) -> str:
    from scalinglab.laws.consensus import APPROACHES

    head = "<h2 id=answer>Answer: compute-optimal N and D</h2>"
    if ans.result is None:
        return f"{head}<p class=bad>No answer: {_e(ans.why_not)}.</p>"
    d = ans.result
    aps, failed, best = d.get("approaches") or {}, d.get("failed") or {}, d.get("best_backtest")
    out = [head, "<p class=meta>The three approaches of Hoffmann et al. (2022) on the same runs, "
           f"{_e(ans.source)}.</p>",
           "<table><tr><th>N_opt &prop; C<sup>a</sup></th><th>a [95% interval]</th>"
           "<th>back-test (the largest isoFLOP budget held out, every run of it)</th></tr>"]
    for k, label in APPROACHES.items():
        if k in aps:
            ap = aps[k]
            lo, hi = (math.nan if x is None else float(x) for x in ap["a_ci"])
            tag = " <span class=good>(best back-test)</span>" if k == best else ""
            out.append(f"<tr><td>{_e(label)}{tag}</td><td class=num>{_interval(ap['a'], lo, hi, _a)}</td>"
                       f"<td>{_bt(ap)}</td></tr>")
        elif k in failed:
            out.append(f"<tr><td>{_e(label)}</td><td class=num>&ndash;</td><td class=warn>not fitted: "
                       f"{_e(failed[k])}</td></tr>")
    out.append("<tr><td class=meta>published</td><td class=meta>Kaplan 2020: 0.73; Hoffmann 2022: 0.46 to "
               "0.50</td><td class=meta>for reference, other data</td></tr></table>")
    ov = d.get("overlap")
    if len(aps) >= 2 and d.get("comparable", True):
        if ov is not None:
            out.append(f"<p class=good>The {len(aps)} intervals overlap (a in [{ov[0]:.3f}, {ov[1]:.3f}]): "
                       "the approaches agree.</p>")
        else:
            name = APPROACHES[best] if best else "none (no back-test ran)"
            out.append("<p class=bad>The intervals do NOT overlap: the approaches disagree. Best back-test: "
                       f"{_e(name)}.</p>")
    elif len(aps) == 1:
        out.append(f"<p class=warn>Only {_e(APPROACHES[next(iter(aps))])} could be fitted: there is no "
                   "agreement to check.</p>")
    for n in d.get("notes") or []:
        out.append(f"<p class=warn>Note: {_e(n)}.</p>")
    a = d.get("allocation")
    if d.get("refused"):
        out.append(f"<p class=bad>Allocation REFUSED: {_e(d['refused'])}.</p>")
    elif a is not None:
        def iv(key: str, fmt) -> str:
            ci = a.get(f"{key}_ci")
            return _interval(a[key], *(ci if ci is not None else (None, None)), fmt)

        loss = (iv("loss", lambda x: f"{x:.4f}") if a.get("loss") is not None
                else f"<span class=bad>refused</span>: {_e(a.get('loss_refused') or 'none')}")
        out.append(
            f"<p>The allocation at C = {a['C']:.4g} FLOPs, from {_e(ans.chosen_label())} "
            "([low, high]: 95 % bootstrap intervals):</p><table><tr><th>N_opt, parameters</th>"
            "<th>D_opt, tokens</th><th>D/N, tokens per parameter</th><th>loss, nats/token</th></tr>"
            f"<tr><td class=num>{iv('N_opt', fmt_si)}</td><td class=num>{iv('D_opt', fmt_si)}</td>"
            f"<td class=num>{iv('tokens_per_param', _tpp)}</td><td class=num>{loss}</td></tr></table>"
        )
        notes = [n for n in a.get("notes") or [] if n != "C = 6 N D"]
        if notes:
            out.append("<ul>" + "".join(f"<li class=meta>{_e(n)}</li>" for n in notes) + "</ul>")
    out.append("<details><summary>As <code>scalinglab study fit</code> prints it</summary><pre>"
               + _e("\n".join(ans.lines())) + "</pre></details>")
    return "".join(out)


def _a(x: float) -> str:
    return f"{x:.3f}"


def _runs_table(runs: pd.DataFrame, n_col: str) -> str:
    out = [
        "<table><tr><th>run</th><th>status</th><th>N</th><th>D, tokens</th><th>B, tokens</th>"
        "<th>final val loss</th></tr>"
    ]
    for _, r in runs.iterrows():
        out.append(
            f"<tr><td><code>{_e(r['run_id'])}</code></td><td>{_e(r['status'])}</td>"
            f"<td class=num>{fmt_si(r[n_col])}</td><td class=num>{fmt_si(r['tokens'])}</td>"
            f"<td class=num>{fmt_si(r['batch_tokens'])}</td><td class=num>{fmt_num(r['loss'], 4)}</td></tr>"
        )
    out.append("</table>")
    return "".join(out)


def render_page(
    *,
    name: str,
    generated: str,
    summary: str,
    advice: list[str],
    predictions: Predictions,
    figures: list[FigureOut],
    skipped: dict[str, str],
    fit_rows: list[FitRow],
    runs: pd.DataFrame,
    n_col: str,
    answer: Answer | None = None,
) -> str:
    nav = " ".join(f'<a href="#fig-{_e(f.name)}">{_e(f.title)}</a>' for f in figures)
    skipped_html = ""
    if skipped:
        items = "".join(f"<li><b>{_e(k)}</b>: {_e(v)}</li>" for k, v in skipped.items())
        skipped_html = f"<h2 id=skipped>Figures not drawn</h2><ul class=skipped>{items}</ul>"
    adv = (
        "".join(f"<li>{_e(a)}</li>" for a in advice) or "<li>No recommendation: see the sections below.</li>"
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>scalinglab report: {_e(name)}</title><style>{CSS}</style><script>{SCRIPT}</script></head>
<body><main>
<h1>Scaling study report: {_e(name)}</h1>
<p class=meta>Generated {_e(generated)} by scalinglab. {_e(summary)}</p>
<nav><a href="#answer">Answer</a> <a href="#next">What next?</a> <a href="#predictions">Predictions</a> {nav}
<a href="#fits">Fits</a>
<a href="#runs">Runs</a></nav>
{_answer(answer) if answer is not None else ""}
<h2 id=next>What should I train next?</h2><ul class=advice>{adv}</ul>
<h2 id=predictions>Predictions</h2>{_predictions(predictions)}
<h2 id=figures>Figures</h2><div class=figs>{"".join(_figure(f) for f in figures)}</div>
{skipped_html}
<h2 id=fits>Fits</h2>{_fits_table(fit_rows)}
<h2 id=runs>Runs</h2><details><summary>{len(runs)} runs</summary>{_runs_table(runs, n_col)}</details>
</main></body></html>
"""
