"""The HTML report: one self-contained file (inline CSS, images as data URIs) a clinician can read."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import numpy as np

from patchscan.atomic import write_text_atomic
from patchscan.errors import ImageError
from patchscan.imaging import load_rgb
from patchscan.report import images
from patchscan.report.summary import HISTOGRAM_BINS, TOP_PER_SLIDE, Group, Provenance, Summary

MAX_SLIDES = 60  # slide cards beyond this are listed in the table only, to keep the file small
SLIDES_OPEN = 3  # slide cards shown unfolded; the rest open on a click
REVIEW_SLIDES = 10  # slides whose doubtful patches are shown as thumbnails
REVIEW_OPEN = 1  # of those, shown unfolded: the rest of the results stay within a screen's reach

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;background:#fafafa}
header{background:#1d2330;color:#fff;padding:18px 32px}header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;color:#c8cfdc;font-size:13px}main{padding:8px 32px 40px;max-width:1280px}
nav{font-size:13px;margin:12px 0 0;line-height:1.8}nav a{margin-right:14px;white-space:nowrap}
a{color:#2756a8}
h2{font-size:18px;margin:28px 0 10px;border-bottom:1px solid #dde;padding-bottom:4px}
h3{font-size:15px;margin:14px 0 6px}
.cards{display:flex;gap:14px;flex-wrap:wrap;margin-top:14px}
.card{background:#fff;border:1px solid #dde;border-radius:8px;padding:12px 18px;min-width:130px}
.card b{display:block;font-size:28px}.card.pos b{color:#b2182b}.card.err b{color:#8a5a00}.card.rev b{color:#6a3d9a}
.card span{font-size:13px;color:#555}
table{border-collapse:collapse;background:#fff;font-size:13px;margin:6px 0}
th,td{border:1px solid #dde;padding:4px 9px;text-align:right}th{background:#f0f2f6}
td.l,th.l{text-align:left}.prov td{text-align:left}.prov code{word-break:break-all}
details.slide{background:#fff;border:1px solid #dde;border-radius:8px;padding:8px 12px;margin:0 0 12px}
details.slide summary{font-size:15px;cursor:pointer}details.slide[open] summary{margin-bottom:8px}
.maps{display:flex;gap:10px;align-items:flex-start;flex-wrap:wrap}
.maps figure{margin:0}.maps figcaption{font-size:12px;color:#555}
.maps img{image-rendering:pixelated;display:block;border:1px solid #eee}
.legend{display:flex;gap:28px;flex-wrap:wrap;align-items:center;font-size:12px;color:#555}
.swatch{display:inline-block;width:11px;height:11px;margin:0 4px 0 10px;vertical-align:middle}
.thumbs{display:flex;flex-wrap:wrap;gap:10px}.thumbs figure{margin:0;background:#fff;border:1px solid #dde;padding:4px;width:104px}
.thumbs img{width:96px;height:96px}.thumbs figcaption{font-size:11px;overflow-wrap:anywhere}
.note{font-size:12px;color:#555}.warn{color:#8a5a00}
"""


def write_html(summary: Summary, path: Path) -> None:
    write_text_atomic(path, render(summary))


def render(summary: Summary) -> str:
    """The page, in the order a reader needs it: what needs attention and the results first,
    how they were made (metrics, errors, provenance, the model) last."""
    p = summary.provenance
    anchors = _card_anchors(summary)
    sections = [
        _counts(summary),
        _review(summary, anchors),
        _groups_table(summary, anchors),
        _slides(summary, anchors),
        _suspicious(summary, anchors),
        _histogram(summary),
        _quality(summary),
        _errors(summary),
        _provenance(summary),
        _model_card(summary),
    ]
    title = f"patchscan report: {p.model.name} model, {summary.classified + summary.error_count:,} files"
    state = " (interrupted: partial results)" if p.interrupted else ""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{_e(title)}{_e(state)}</h1><p>{_e(p.model.description)}. "
        f"Generated {_e(p.finished or p.started)} by patchscan {_e(p.tool_version)}. "
        "Research use only, not a diagnostic device.</p></header><main>"
        + _contents(sections)
        + _outside(summary)
        + "".join(sections)
        + "</main></body></html>\n"
    )


def _h2(anchor: str, title: str, css: str = "") -> str:
    """A section heading: `anchor` is the report's own word, `title` already markup (escaped).
    The table of contents is read back from these."""
    kind = f' class="{css}"' if css else ""
    return f'<h2 id="{anchor}"{kind}>{title}</h2>'


_HEADING = re.compile(r'<h2 id="([a-z-]+)"[^>]*>(.*?)</h2>')


def _contents(sections: list[str]) -> str:
    """Links to every section the page has, in its order."""
    links = [
        f'<a href="#{anchor}">{title}</a>'
        for part in sections
        for anchor, title in _HEADING.findall(part)
    ]
    return f'<nav id="contents" aria-label="contents">{"".join(links)}</nav>'


def _card_anchors(summary: Summary) -> dict[str, str]:
    """The id of each slide's card, by slide name: the report's own words, never the name,
    so any name links safely."""
    return {g.name: f"slide-{i}" for i, g in enumerate(_carded(summary))}


def _carded(summary: Summary) -> list[Group]:
    """The slides that get a card (maps): those with positioned patches, most positive first."""
    return [g for g in _ordered_groups(summary) if g.tiles][:MAX_SLIDES]


def _counts(summary: Summary) -> str:
    positive = summary.provenance.model.positive
    total = summary.classified
    cards = []
    for label, count in summary.counts.items():
        share = f"{100 * count / total:.1f}% of classified" if total else "–"
        css = "card pos" if label == positive else "card"
        cards.append(f'<div class="{css}"><b>{count:,}</b><span>{_e(label)} · {share}</span></div>')
    if summary.provenance.labels.has_review:
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
    return f'<div class="cards" id="counts">{"".join(cards)}</div>'


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
        f"<p class='warn' id='drift'><b>{len(outside):,} slide(s) outside what the model was "
        f"trained on</b> (tissue colours more than "
        f"{summary.provenance.model.stain['drift_limit']:g} training-"  # type: ignore[index]
        f"slide standard deviations away: stain, scanner or tissue unlike the training slides): "
        f"{names}. Their calls and review marks are less reliable; check them by eye.</p>"
    )


def _slide_name(group: Group, anchors: dict[str, str]) -> str:
    """A slide's name, linked to its card where it has one."""
    anchor = anchors.get(group.name)
    name = _breakable(group.name)
    return f'<a href="#{anchor}">{name}</a>' if anchor else name


def _review(summary: Summary, anchors: dict[str, str]) -> str:
    """What needs a human first: slides ranked by their doubtful calls, with those patches."""
    if not summary.provenance.labels.has_review:
        return ""
    ranked = summary.review_by_slide()
    target = summary.provenance.labels.review_target
    guarantee = (
        f"Outside the band, the model's calls were wrong at most {100 * target:g}% of the time on "
        "held-out data (95% confidence)."
        if target is not None
        else ""
    )
    if not ranked:
        return (
            f"{_h2('review', 'Needs review (0)')}<p class='note'>No call fell in the model's "
            f"review band. {_e(guarantee)}</p>"
        )
    intro = (
        f"{_h2('review', f'Needs review ({summary.review_total:,})')}<p class='note'>Calls whose "
        f"score lies in the model's review band: the label in the CSV is still the decision at the "
        f"threshold, but a person should look. {_e(guarantee)} "
    )
    if not summary.has_slides:  # photos: one set, those nearest the threshold
        nearest = _doubtful(summary, summary.review_nearest())
        return f"{intro}Those nearest the threshold:</p>{nearest}"
    return f"{intro}Slides with the most first; the patches shown are those nearest the " + (
        f"threshold.</p>{_review_by_slide(summary, ranked, anchors)}"
    )


def _review_by_slide(
    summary: Summary,
    ranked: list[tuple[Group, list[tuple[str, float, str]]]],
    anchors: dict[str, str],
) -> str:
    """The slides with doubtful calls (a table, each linked to its card), and the doubtful
    patches of the first few, the first open."""
    rows = "".join(
        f"<tr><td class='l'>{_slide_name(group, anchors)}</td><td>{group.review:,}</td>"
        f"<td>{_pct(group.review / max(group.patches - group.errors, 1))}</td></tr>"
        for group, _ in ranked
    )
    blocks = "".join(
        f"<details{' open' if index < REVIEW_OPEN else ''}><summary>"
        f"{_slide_name(group, anchors)} · {group.review:,} to review</summary>"
        f"{_doubtful(summary, patches)}</details>"
        for index, (group, patches) in enumerate(ranked[:REVIEW_SLIDES])
    )
    return (
        f"<table><tr><th class='l'>slide / patient</th><th>need review</th>"
        f"<th>of classified</th></tr>{rows}</table>{blocks}"
    )


def _doubtful(summary: Summary, patches: list[tuple[str, float, str]]) -> str:
    """Thumbnails of doubtful calls (path, score, label), each with its score and label."""
    size = summary.provenance.model.input_size
    figures = "".join(
        _thumb(path, size, f"<b>{score:.3f}</b> · {_e(label)}") for path, score, label in patches
    )
    return f"<div class='thumbs'>{figures}</div>"


def _thumb(path: str, size: tuple[int, int], caption: str) -> str:
    """A file as a thumbnail over `caption` (markup) and its name; nothing when it can no longer
    be read (changed since it was scanned: the CSV still has it)."""
    try:
        thumb = images.jpeg_data_uri(load_rgb(path, size))
    except ImageError:
        return ""
    return (
        f'<figure><img alt="patch" src="{thumb}"><figcaption>{caption}<br>'
        f"{_breakable(Path(path).name)}</figcaption></figure>"
    )


def _breakable(name: str) -> str:
    """A file or slide name, escaped, that wraps only after its underscores and hyphens: never
    in the middle of `x1051` or `class1`."""
    return re.sub(r"([_-])", r"\1<wbr>", _e(name))


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
    return f'{_h2("provenance", "Provenance")}<table class="prov">{body}</table>'


def _cell(key: str, text: str) -> str:
    """A provenance value as markup: the rows hold plain text only, escaped here, so what a
    model file or the command line says about itself never reaches the page as markup."""
    return f"<code>{_e(text)}</code>" if key in ("model sha256", "command") else _e(text)


def _context_row(p: Provenance) -> list[tuple[str, str]]:
    context = p.model.context
    if context is None:
        return []
    return [
        (
            "slide context",
            f"a patch with a position is labelled {p.model.positive} when the weighted mean "
            f"of its P (×{context.self_weight:g}) and its neighbours' (up to {context.radius} "
            f"patches away) is ≥ {p.labels.positioned_threshold:g}",
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
        f"{_h2('agreement', 'Agreement with the labels in the file names')}"
        f'<p class="note">Truth read from <code>class&lt;N&gt;</code> names or class folders; '
        f"precision, recall and F1 are for {_e(names[1])}; ROC AUC ranks the score each patch "
        f"was labelled by.</p>"
        f"<table><tr>{head}</tr><tr>{values}</tr></table>"
        f'<table><tr><th class="l">true \\ predicted</th><th>{_e(names[0])}</th><th>{_e(names[1])}</th></tr>'
        f'<tr><th class="l">{_e(names[0])}</th><td>{tn:,}</td><td>{fp:,}</td></tr>'
        f'<tr><th class="l">{_e(names[1])}</th><td>{fn:,}</td><td>{tp:,}</td></tr></table>'
    )


def _ordered_groups(summary: Summary) -> list[Group]:
    """Slides with the most positive patches first: where a reader should look first."""
    return sorted(summary.groups.values(), key=lambda g: (-g.positives, g.name))


def _groups_table(summary: Summary, anchors: dict[str, str]) -> str:
    """One row per slide, linked to its card: only for a scan with slides (Summary.has_slides)."""
    if not summary.has_slides:
        return ""
    positive = _e(summary.provenance.model.positive)
    has_truth = any(g.truth for g in summary.groups.values())
    reviews = summary.provenance.labels.has_review
    drifts = bool(summary.provenance.model.stain)
    head = (
        f"<th class='l'>slide / patient</th><th>files</th><th>{positive}</th>"
        f"<th>% {positive}</th>"
        + ("<th>need review</th>" if reviews else "")
        + "<th>errors</th>"
        + (f"<th>true % {positive}</th><th>balanced acc.</th>" if has_truth else "")
        + ("<th>colour drift</th>" if drifts else "")
    )
    rows = "".join(
        f"<tr>{_group_row(summary, group, anchors, has_truth, reviews, drifts)}</tr>"
        for group in _ordered_groups(summary)
    )
    beyond = len([g for g in summary.groups.values() if g.tiles]) - len(anchors)
    more = f" The {beyond:,} slides past the first {MAX_SLIDES} have no card." if beyond > 0 else ""
    return (
        f"{_h2('slide-table', 'Per slide / patient')}<p class='note'>{positive}: patches labelled "
        f"{positive}; % of the classified ones. Most {positive} patches first; a name opens the "
        f"slide's card.{more}</p><table><tr>{head}</tr>{rows}</table>"
    )


def _group_row(
    summary: Summary,
    group: Group,
    anchors: dict[str, str],
    has_truth: bool,
    reviews: bool,
    drifts: bool,
) -> str:
    d = group.as_dict()
    cells = (
        f"<td class='l'>{_slide_name(group, anchors)}</td><td>{d['files']:,}</td>"
        f"<td>{group.positives:,}</td><td>{_pct(d['positive_fraction'])}</td>"
        + (f"<td>{group.review:,}</td>" if reviews else "")
        + f"<td>{d['errors']:,}</td>"
    )
    if has_truth:
        m = d.get("metrics")
        true_share = d["truth_positive"] / len(group.truth) if m else None
        cells += (
            f"<td>{_pct(true_share)}</td><td>{_num(m['balanced_accuracy'] if m else None)}</td>"
        )
    if drifts:
        drift = summary.drift(group)
        flag = " class='warn'" if summary.outside(group) else ""
        mark = " ⚠" if summary.outside(group) else ""
        cells += f"<td{flag}>{'–' if drift is None else f'{drift:.1f}{mark}'}</td>"
    return cells


def _score_name(summary: Summary) -> str:
    """What the maps colour and the rankings rank: the score the labels were decided on."""
    p = summary.provenance
    return (
        "slide-context score"
        if p.labels.context_threshold is not None
        else f"P({p.model.positive})"
    )


def _slides(summary: Summary, anchors: dict[str, str]) -> str:
    groups = _carded(summary)
    if not groups:
        return ""
    cards = "".join(
        _slide_card(summary, g, anchors[g.name], i < SLIDES_OPEN) for i, g in enumerate(groups)
    )
    return (
        f"{_h2('slides', 'Slides')}<p class='note'>Each patch placed at its x, y. The heatmap "
        f"colours the {_e(_score_name(summary))} each patch was labelled by, around its "
        f"threshold: warm where the call is {_e(summary.provenance.model.positive)}. The calls "
        f"map shows the labels the CSV holds.</p>{_legend(summary)}{cards}"
    )


def _slide_card(summary: Summary, group: Group, anchor: str, unfolded: bool) -> str:
    maps = images.slide_maps(group.tiles)
    width = images.shown_width(maps["tissue"])
    positive = _e(summary.provenance.model.positive)
    pictures = [
        ("tissue", images.jpeg_data_uri(maps["tissue"]), "tissue (rebuilt from patches)"),
        ("score", images.png_data_uri(maps["score"]), _e(_score_name(summary))),
        ("calls", images.png_data_uri(maps["calls"]), "calls"),
    ]
    if "truth" in maps:
        pictures.append(("truth", images.png_data_uri(maps["truth"]), "truth from the names"))
    figures = "".join(
        f'<figure style="width:{width}px"><img alt="{_e(group.name)} {kind}" src="{uri}" '
        f'width="{width}"><figcaption>{caption}</figcaption></figure>'
        for kind, uri, caption in pictures
    )
    classified = group.patches - group.errors
    share = f" ({_pct(group.positives / classified)})" if classified else ""
    review = f" · {group.review:,} to review" if summary.provenance.labels.has_review else ""
    drift = " · <span class='warn'>colours unlike training</span>" if summary.outside(group) else ""
    return (
        f'<details class="slide" id="{anchor}"{" open" if unfolded else ""}><summary><b>'
        f"{_breakable(group.name)}</b> · {len(group.tiles):,} patches · {group.positives:,} "
        f"{positive}{share}{review}{drift}</summary><div class='maps'>{figures}</div></details>"
    )


def _legend(summary: Summary) -> str:
    """The heatmap's scale with its threshold marked, and the calls map's colours."""
    threshold = summary.provenance.labels.positioned_threshold  # every mapped patch has a position
    stops = "".join(
        f'<stop offset="{o:.3f}" stop-color="{c}"/>' for o, c in images.gradient_stops()
    )
    scale = (
        f'<svg width="260" height="30" role="img" aria-label="colour scale">'
        f'<defs><linearGradient id="scale">{stops}</linearGradient></defs>'
        f'<rect x="10" y="2" width="240" height="12" fill="url(#scale)"/>'
        f'<line x1="130" x2="130" y1="0" y2="17" stroke="#000" stroke-width="2"/>'
        f'<text x="10" y="28" font-size="11" text-anchor="middle">0</text>'
        f'<text x="130" y="28" font-size="11" text-anchor="middle">threshold {threshold:.3g}</text>'
        f'<text x="250" y="28" font-size="11" text-anchor="middle">1</text></svg>'
    )
    negative, positive = summary.provenance.model.classes
    swatches = [(images.TRUTH_COLOURS[True], positive), (images.TRUTH_COLOURS[False], negative)]
    if summary.provenance.labels.has_review:
        swatches[1:1] = [(images.REVIEW_COLOURS[True], f"{positive}, needs review")]
        swatches.append((images.REVIEW_COLOURS[False], f"{negative}, needs review"))
    calls = "".join(
        f'<span class="swatch" style="background:rgb{tuple(c)}"></span>{_e(label)}'
        for c, label in swatches
    )
    return (
        f"<div class='legend'><span>heatmap: {_e(_score_name(summary))} {scale}</span>"
        f"<span>calls and truth:{calls}</span></div>"
    )


def _suspicious(summary: Summary, anchors: dict[str, str]) -> str:
    """The highest-scoring patches of each slide (a global ranking would show one patient's);
    for photos, the highest of the scan."""
    size = summary.provenance.model.input_size
    score = _e(_score_name(summary))
    if not summary.has_slides:
        top = summary.most_suspicious()
        if not top:
            return ""
        figures = "".join(_thumb(path, size, f"<b>{s:.3f}</b>") for s, path, _ in top)
        return (
            f"{_h2('suspicious', 'Most suspicious')}<p class='note'>The {len(top)} files with the "
            f"highest {score}.</p><div class='thumbs'>{figures}</div>"
        )
    blocks = []
    for group in _ordered_groups(summary)[:MAX_SLIDES]:
        ranked = summary.most_suspicious_of(group)
        if ranked:
            figures = "".join(_thumb(path, size, f"<b>{s:.3f}</b>") for s, path in ranked)
            blocks.append(
                f"<h3>{_slide_name(group, anchors)} · {group.positives:,} "
                f"{_e(summary.provenance.model.positive)}</h3><div class='thumbs'>{figures}</div>"
            )
    return (
        f"{_h2('suspicious', 'Most suspicious, per slide')}<p class='note'>Each slide's "
        f"{TOP_PER_SLIDE} patches with the highest {score}, the score that labelled them.</p>"
        + "".join(blocks)
    )


def _histogram(summary: Summary) -> str:
    counts = np.array(summary.histogram)
    if counts.sum() == 0:
        return ""
    width, height, bar = 600, 160, 600 / HISTOGRAM_BINS
    top = counts.max()
    cuts = sorted(summary.thresholds, key=lambda t: -summary.thresholds[t])
    middles = (np.arange(HISTOGRAM_BINS) + 0.5) / HISTOGRAM_BINS
    colours = images.colour(images.around_threshold(middles, cuts[0]))
    bars = "".join(
        f'<rect x="{i * bar + 1:.1f}" y="{height - h:.1f}" width="{bar - 2:.1f}" height="{h:.1f}" '
        f'fill="rgb{tuple(int(c) for c in colours[i])}"><title>{i / HISTOGRAM_BINS:.2f}–'
        f"{(i + 1) / HISTOGRAM_BINS:.2f}: {n:,}</title></rect>"
        for i, n in enumerate(counts)
        for h in [height * n / top]
    )
    lines = "".join(
        _threshold_line(summary, cut, row, width, height) for row, cut in enumerate(cuts)
    )
    axis = (
        f'<text x="0" y="{height + 14}" font-size="11">0</text>'
        f'<text x="{width - 8}" y="{height + 14}" font-size="11">1</text>'
    )
    return (
        f"{_h2('histogram', 'Score histogram')}<p class='note'>Files per bin of the score each "
        f"was labelled by, {_scores_used(summary)}; tallest bar {top:,}.</p>"
        f'<svg width="{width}" height="{height + 18}" role="img" aria-label="histogram">'
        f"{bars}{lines}{axis}</svg>"
    )


def _scores_used(summary: Summary) -> str:
    """Which score the histogram counts: the slide-context score only where it labelled."""
    own = f"P({_e(summary.provenance.model.positive)})"
    if _score_name(summary) == own:
        return own
    return f"the {_e(_score_name(summary))} for patches with a position, else {own}"


def _threshold_line(summary: Summary, cut: float, row: int, width: int, height: int) -> str:
    """The dashed line at a threshold some file was labelled at, named where there are two."""
    x = cut * width
    labels = summary.provenance.labels
    kind = ""
    if len(summary.thresholds) > 1:
        kind = " (slide context)" if cut == labels.context_threshold else " (patch alone)"
    return (
        f'<line x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="{height}" stroke="#000" stroke-dasharray="4 3"/>'
        f'<text x="{x + 4:.1f}" y="{12 + 13 * row}" font-size="11">threshold {cut:.3g}{kind}</text>'
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
        return f"{_h2('errors', 'Other files')}{skipped_list}"
    title = f"Files that could not be classified ({summary.error_count:,})"
    return f"{_h2('errors', title, 'warn')}{table}{extra}{skipped_list}"


# The model card's figures, in this order, under these names (key: a ModelInfo.metrics key).
FIGURES = (
    ("n", "n"),
    ("balanced_accuracy", "balanced accuracy"),
    ("roc_auc", "ROC AUC"),
    ("recall", "sensitivity"),
    ("precision", "precision"),
    ("f1", "F1"),
    ("worst_patient_sensitivity", "worst patient's sensitivity"),
    ("ece", "calibration error (ECE)"),
)


def _model_card(summary: Summary) -> str:
    """What the model's own evaluation says, in the figures of what this scan does."""
    model = summary.provenance.model
    what, figures = model.scan_figures()
    review = model.metrics.get("review")
    shown = [(name, figures[key]) for key, name in FIGURES if key in figures]
    if isinstance(review, dict):
        shown += [
            (name, review[key])
            for key, name in (
                ("share_reviewed", "% marked for review"),
                ("decided_accuracy", "accuracy of the other calls"),
            )
            if key in review
        ]
    head = "".join(f"<th>{_e(name)}</th>" for name, _ in shown)
    values = "".join(
        f"<td>{_pct(value) if name.startswith('%') else _num(value)}</td>" for name, value in shown
    )
    table = f"<table><tr>{head}</tr><tr>{values}</tr></table>" if shown else ""
    rows = [
        ("trained on", model.training.get("data", "")),
        ("split", model.training.get("split", "")),
        ("threshold rule", model.training.get("threshold_rule", "")),
    ]
    about = "".join(
        f"<tr><th class='l'>{k}</th><td class='l'>{_e(v)}</td></tr>" for k, v in rows if v
    )
    return (
        f"{_h2('model', 'About the model')}<p>{_e(model.description)}.</p>"
        f"<table class='prov'>{about}</table>"
        f"<p>Figures of what the scan does ({_e(what)}):</p>{table}"
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
    """A share as a percentage; anything but a number (a crafted model's metrics) as text."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _e(value)
    return f"{100 * value:.1f}%"
