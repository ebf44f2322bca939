"""The HTML report: one self-contained file (inline CSS, images as data URIs) a clinician can read."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from patchscan.atomic import write_text_atomic
from patchscan.errors import ImageError
from patchscan.imaging import load_rgb
from patchscan.report import images
from patchscan.report.summary import HISTOGRAM_BINS, Group, Provenance, Summary

THUMB = 96
MAX_SLIDES = 60  # slide views beyond this are listed in the table only, to keep the file small

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;background:#fafafa}
header{background:#1d2330;color:#fff;padding:18px 32px}header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;color:#c8cfdc;font-size:13px}main{padding:8px 32px 40px;max-width:1280px}
h2{font-size:18px;margin:28px 0 10px;border-bottom:1px solid #dde;padding-bottom:4px}
.cards{display:flex;gap:14px;flex-wrap:wrap;margin-top:18px}
.card{background:#fff;border:1px solid #dde;border-radius:8px;padding:12px 18px;min-width:130px}
.card b{display:block;font-size:28px}.card.pos b{color:#b2182b}.card.err b{color:#8a5a00}.card.rev b{color:#6a3d9a}
.card span{font-size:13px;color:#555}
table{border-collapse:collapse;background:#fff;font-size:13px;margin:6px 0}
th,td{border:1px solid #dde;padding:4px 9px;text-align:right}th{background:#f0f2f6}
td.l,th.l{text-align:left}.prov td{text-align:left}.prov code{word-break:break-all}
.slides{display:flex;flex-wrap:wrap;gap:22px}.slide{background:#fff;border:1px solid #dde;border-radius:8px;padding:10px}
.slide h3{margin:0 0 6px;font-size:15px}.maps{display:flex;gap:8px;align-items:flex-start}
.maps figure{margin:0}.maps figcaption{font-size:12px;color:#555}
.maps img{max-width:420px;image-rendering:pixelated}
.thumbs{display:flex;flex-wrap:wrap;gap:10px}.thumbs figure{margin:0;background:#fff;border:1px solid #dde;padding:4px;width:104px}
.thumbs img{width:96px;height:96px;image-rendering:pixelated}.thumbs figcaption{font-size:11px;word-break:break-all}
.note{font-size:12px;color:#555}.warn{color:#8a5a00}
"""


def write_html(summary: Summary, path: Path) -> None:
    write_text_atomic(path, render(summary))


def render(summary: Summary) -> str:
    p = summary.provenance
    sections = [
        _counts(summary),
        _outside(summary),
        _review(summary),
        _provenance(summary),
        _quality(summary),
        _groups_table(summary),
        _slides(summary),
        _suspicious(summary),
        _histogram(summary),
        _errors(summary),
        _model_card(summary),
    ]
    title = (
        f"patchscan report: {p.model.name} model, {summary.classified + summary.error_count} files"
    )
    state = " (interrupted: partial results)" if p.interrupted else ""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{_e(title)}{_e(state)}</h1><p>{_e(p.model.description)}. "
        f"Generated {_e(p.finished or p.started)} by patchscan {_e(p.tool_version)}. "
        "Research use only, not a diagnostic device.</p></header><main>"
        + "".join(sections)
        + "</main></body></html>\n"
    )


def _counts(summary: Summary) -> str:
    positive = summary.provenance.model.positive
    total = summary.classified
    cards = []
    for label, count in summary.counts.items():
        share = f"{100 * count / total:.1f}% of classified" if total else "–"
        css = "card pos" if label == positive else "card"
        cards.append(f'<div class="{css}"><b>{count:,}</b><span>{_e(label)} · {share}</span></div>')
    if summary.provenance.labels.review is not None:
        share = f"{100 * summary.review_total / total:.1f}% of classified" if total else "–"
        cards.append(
            f'<div class="card rev"><b>{summary.review_total:,}</b>'
            f"<span>need review · {share}</span></div>"
        )
    cards.append(
        f'<div class="card err"><b>{summary.error_count:,}</b><span>unreadable files</span></div>'
    )
    skipped = sum(summary.skipped.values())
    cards.append(f'<div class="card"><b>{skipped:,}</b><span>other files skipped</span></div>')
    return f'<div class="cards">{"".join(cards)}</div>'


REVIEW_SLIDES = 10  # slides whose doubtful patches are shown as thumbnails


def _outside(summary: Summary) -> str:
    """Slides whose colours lie outside what the model was trained on: said first, because
    their calls and the review band's guarantee may not hold."""
    outside = [g for g in summary.groups.values() if summary.outside(g)]
    if not outside:
        return ""
    names = ", ".join(
        f"{_e(g.name)} ({summary.drift(g):.1f})" for g in sorted(outside, key=lambda g: g.name)
    )
    return (
        f"<p class='warn'><b>{len(outside):,} slide(s) outside what the model was trained on</b>"
        f" (tissue colours more than {summary.provenance.model.stain['drift_limit']:g} training-"  # type: ignore[index]
        f"slide standard deviations away: stain, scanner or tissue unlike the training slides): "
        f"{names}. Their calls and review marks are less reliable; check them by eye.</p>"
    )


def _review(summary: Summary) -> str:
    """What needs a human first: slides ranked by their doubtful calls, with those patches."""
    labels = summary.provenance.labels
    if labels.review is None and labels.context_review is None:
        return ""
    ranked = summary.review_by_slide()
    target = labels.review_target
    guarantee = (
        f"Outside the band, the model's calls were wrong at most {100 * target:g}% of the time on "
        "held-out data (95% confidence)."
        if target is not None
        else ""
    )
    if not ranked:
        return (
            f"<h2 id='review'>Needs review (0)</h2><p class='note'>No call fell in the model's "
            f"review band. {_e(guarantee)}</p>"
        )
    rows = "".join(
        f"<tr><td class='l'>{_e(group.name)}</td><td>{group.review:,}</td>"
        f"<td>{_pct(group.review / max(group.patches - group.errors, 1))}</td></tr>"
        for group, _ in ranked
    )
    size = summary.provenance.model.input_size
    blocks = []
    for group, patches in ranked[:REVIEW_SLIDES]:
        figures = []
        for path, score, label in patches:
            try:
                thumb = images.png_data_uri(load_rgb(path, size))
            except ImageError:
                continue
            figures.append(
                f'<figure><img alt="patch" src="{thumb}"><figcaption><b>{score:.3f}</b> · '
                f"{_e(label)}<br>{_e(Path(path).name)}</figcaption></figure>"
            )
        blocks.append(
            f"<h3>{_e(group.name)} · {group.review:,} to review</h3>"
            f"<div class='thumbs'>{''.join(figures)}</div>"
        )
    return (
        f"<h2 id='review'>Needs review ({summary.review_total:,})</h2><p class='note'>Calls whose "
        f"score lies in the model's review band: the label in the CSV is still the decision at the "
        f"threshold, but a person should look. {_e(guarantee)} Slides with the most first; the "
        f"patches shown are those nearest the threshold.</p>"
        f"<table><tr><th class='l'>slide / patient</th><th>need review</th><th>of classified</th>"
        f"</tr>{rows}</table>{''.join(blocks)}"
    )


def _provenance(summary: Summary) -> str:
    p = summary.provenance
    rows = [
        ("tool", f"patchscan {p.tool_version}"),
        ("model", f"{p.model.name} {p.model.version} ({p.model_path.name})"),
        ("model sha256", p.model_sha256),
        ("threshold", f"{p.labels.threshold:g} → {p.model.positive} when P ≥ threshold"),
        *_context_row(p),
        ("command", p.command_line),
        ("started / finished", f"{p.started} / {p.finished}"),
    ]
    body = "".join(f'<tr><th class="l">{_e(k)}</th><td>{_cell(k, v)}</td></tr>' for k, v in rows)
    return f'<h2>Provenance</h2><table class="prov">{body}</table>'


def _cell(key: str, text: str) -> str:
    """A provenance value as markup: the rows hold plain text only, escaped here, so what a
    model file or the command line says about itself never reaches the page as markup."""
    return f"<code>{_e(text)}</code>" if key in ("model sha256", "command") else _e(text)


def _context_row(p: Provenance) -> list[tuple[str, str]]:
    context = p.model.context
    if context is None or p.labels.context_threshold is None:
        return []
    return [
        (
            "slide context",
            f"a patch with a position is labelled {p.model.positive} when the weighted mean "
            f"of its P (×{context.self_weight:g}) and its neighbours' (up to {context.radius} "
            f"patches away) is ≥ {p.labels.context_threshold:g}",
        )
    ]


def _quality(summary: Summary) -> str:
    quality = summary.quality()
    if quality is None:
        return ""
    names = summary.provenance.model.classes
    (tn, fp), (fn, tp) = quality["confusion_matrix"]
    keys = ("n", "accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc")
    head = "".join(f"<th>{k.replace('_', ' ')}</th>" for k in keys)
    values = "".join(f"<td>{_num(quality[k])}</td>" for k in keys)
    return (
        "<h2>Agreement with the labels in the file names</h2>"
        f'<p class="note">Truth read from <code>class&lt;N&gt;</code> names or class folders; '
        f"precision, recall and F1 are for {_e(names[1])}.</p>"
        f"<table><tr>{head}</tr><tr>{values}</tr></table>"
        f'<table><tr><th class="l">true \\ predicted</th><th>{_e(names[0])}</th><th>{_e(names[1])}</th></tr>'
        f'<tr><th class="l">{_e(names[0])}</th><td>{tn:,}</td><td>{fp:,}</td></tr>'
        f'<tr><th class="l">{_e(names[1])}</th><td>{fn:,}</td><td>{tp:,}</td></tr></table>'
    )


def _ordered_groups(summary: Summary) -> list[Group]:
    """Slides with the most positive patches first: where a reader should look first."""
    return sorted(summary.groups.values(), key=lambda g: (-g.positives, g.name))


def _groups_table(summary: Summary) -> str:
    has_truth = any(g.truth for g in summary.groups.values())
    head = "<th class='l'>slide / patient</th><th>files</th><th>% positive</th><th>mean P</th><th>errors</th>"
    if has_truth:
        head += "<th>true % positive</th><th>balanced acc.</th>"
    reviews = summary.provenance.labels.review is not None
    drifts = bool(summary.provenance.model.stain)
    head += "<th>need review</th>" if reviews else ""
    head += "<th>colour drift</th>" if drifts else ""
    rows = []
    for group in _ordered_groups(summary):
        d = group.as_dict()
        cells = (
            f"<td class='l'>{_e(group.name)}</td><td>{d['files']:,}</td>"
            f"<td>{_pct(d['positive_fraction'])}</td><td>{_num(d['mean_probability'])}</td>"
            f"<td>{d['errors']:,}</td>"
        )
        if has_truth:
            m = d.get("metrics")
            true_share = d["truth_positive"] / len(group.truth) if m else None
            cells += (
                f"<td>{_pct(true_share)}</td><td>{_num(m['balanced_accuracy'] if m else None)}</td>"
            )
        if reviews:
            cells += f"<td>{group.review:,}</td>"
        if drifts:
            drift = summary.drift(group)
            flag = " class='warn'" if summary.outside(group) else ""
            cells += f"<td{flag}>{'–' if drift is None else f'{drift:.1f}'}</td>"
        rows.append(f"<tr>{cells}</tr>")
    positive = _e(summary.provenance.model.positive)
    return (
        f"<h2>Per slide / patient</h2><p class='note'>% positive: share of classified files "
        f"labelled {positive}. Sorted by number of {positive} patches.</p>"
        f"<table><tr>{head}</tr>{''.join(rows)}</table>"
    )


def _slides(summary: Summary) -> str:
    groups = [g for g in _ordered_groups(summary) if g.tiles][:MAX_SLIDES]
    if not groups:
        return ""
    blocks = []
    for group in groups:
        maps = images.slide_maps(group.tiles)
        figures = "".join(
            f'<figure><img alt="{_e(group.name)} {kind}" src="{images.png_data_uri(pixels)}">'
            f"<figcaption>{caption}</figcaption></figure>"
            for kind, pixels, caption in (
                ("tissue", maps["tissue"], "tissue (rebuilt from patches)"),
                ("probability", maps["probability"], f"P({_e(summary.provenance.model.positive)})"),
                *(
                    [("truth", maps["truth"], "ground truth from names (red = positive)")]
                    if "truth" in maps
                    else []
                ),
            )
        )
        blocks.append(
            f'<div class="slide"><h3>{_e(group.name)} · {len(group.tiles):,} patches · '
            f'{group.positives:,} {_e(summary.provenance.model.positive)}</h3><div class="maps">{figures}</div></div>'
        )
    bar = images.png_data_uri(images.colour_bar())
    return (
        "<h2>Slides</h2><p class='note'>Each patch placed at its x, y. Heatmap colour: "
        f'probability 0 <img alt="colour scale" src="{bar}" style="vertical-align:middle"> 1.</p>'
        f'<div class="slides">{"".join(blocks)}</div>'
    )


def _suspicious(summary: Summary) -> str:
    top = summary.most_suspicious()
    if not top:
        return ""
    size = summary.provenance.model.input_size
    figures = []
    for probability, path, group in top:
        try:
            thumb = images.png_data_uri(load_rgb(path, size))
        except ImageError:
            continue  # changed since it was scanned; the table still has it
        figures.append(
            f'<figure><img alt="patch" src="{thumb}"><figcaption><b>{probability:.3f}</b> · '
            f"{_e(group)}<br>{_e(Path(path).name)}</figcaption></figure>"
        )
    return (
        f"<h2>Most suspicious</h2><p class='note'>The {len(figures)} files with the highest "
        f"P({_e(summary.provenance.model.positive)}).</p><div class='thumbs'>{''.join(figures)}</div>"
    )


def _histogram(summary: Summary) -> str:
    counts = np.array(summary.histogram)
    if counts.sum() == 0:
        return ""
    width, height, bar = 600, 160, 600 / HISTOGRAM_BINS
    top = counts.max()
    colours = images.colour((np.arange(HISTOGRAM_BINS) + 0.5) / HISTOGRAM_BINS)
    bars = "".join(
        f'<rect x="{i * bar + 1:.1f}" y="{height - h:.1f}" width="{bar - 2:.1f}" height="{h:.1f}" '
        f'fill="rgb{tuple(int(c) for c in colours[i])}"><title>{i / HISTOGRAM_BINS:.2f}–'
        f"{(i + 1) / HISTOGRAM_BINS:.2f}: {n:,}</title></rect>"
        for i, n in enumerate(counts)
        for h in [height * n / top]
    )
    x = summary.provenance.labels.threshold * width
    line = f'<line x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="{height}" stroke="#000" stroke-dasharray="4 3"/>'
    axis = (
        f'<text x="0" y="{height + 14}" font-size="11">0</text>'
        f'<text x="{width - 8}" y="{height + 14}" font-size="11">1</text>'
        f'<text x="{x + 4:.1f}" y="12" font-size="11">threshold {summary.provenance.labels.threshold:g}</text>'
    )
    return (
        f"<h2>Probability histogram</h2><p class='note'>Files per P({_e(summary.provenance.model.positive)}) "
        f"bin; tallest bar {top:,}.</p>"
        f'<svg width="{width}" height="{height + 18}" role="img" aria-label="histogram">{bars}{line}{axis}</svg>'
    )


def _errors(summary: Summary) -> str:
    if not summary.error_count and not summary.skipped:
        return ""
    rows = "".join(
        f"<tr><td class='l'>{_e(path)}</td><td class='l'>{_e(reason)}</td></tr>"
        for path, reason in summary.errors
    )
    more = summary.error_count - len(summary.errors)
    extra = f"<p class='note'>… and {more:,} more (all are in the CSV).</p>" if more > 0 else ""
    skipped = "".join(f"<li>{n:,} {_e(reason)}</li>" for reason, n in summary.skipped.items())
    table = (
        f"<table><tr><th class='l'>file</th><th class='l'>reason</th></tr>{rows}</table>"
        if rows
        else ""
    )
    skipped_list = (
        f"<p class='note'>Skipped (not rows):</p><ul class='note'>{skipped}</ul>" if skipped else ""
    )
    if not summary.error_count:  # only other files passed over: nothing went wrong
        return f"<h2>Other files</h2>{skipped_list}"
    return f"<h2 class='warn'>Files that could not be classified ({summary.error_count:,})</h2>{table}{extra}{skipped_list}"


def _model_card(summary: Summary) -> str:
    model = summary.provenance.model
    headline = model.metrics
    keys = [
        k for k in ("balanced_accuracy", "roc_auc", "f1", "precision", "recall") if k in headline
    ]
    cells = "".join(f"<th>{k.replace('_', ' ')}</th>" for k in keys)
    values = "".join(f"<td>{_num(headline[k])}</td>" for k in keys)
    data = _e(str(model.training.get("data", "")))
    table = f"<table><tr>{cells}</tr><tr>{values}</tr></table>" if keys else ""
    return (
        f"<h2>About the model</h2><p>{_e(model.description)}. Trained on {data}, split "
        f"{_e(str(model.training.get('split', '')))}; held-out test results:</p>{table}"
        f"<p class='note'>{_e(model.license)}</p>"
    )


def _e(text: object) -> str:
    """The one way text enters the page: every value from a file, a folder, the command line or
    the model's metadata goes through here (or _num, for numbers)."""
    return html.escape(str(text), quote=True)


def _num(value: Any) -> str:
    """A number as the report shows it; anything else (a crafted model's metrics) as text."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _e(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:.3f}"


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"
