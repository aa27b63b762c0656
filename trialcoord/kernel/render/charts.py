"""Charts for deviation reports as inline SVG strings, drawn on the server: the same picture in a page and
in a WeasyPrint PDF, with no script, no web font and no chart library.

Each chart is an accessible image (role="img", a <title>, and a <desc> that gives every number in
words), uses the Okabe-Ito palette, which stays distinguishable with colour blindness, and writes each
value beside its bar, so nothing is told by colour alone. The same arguments give the same bytes.
"""

from __future__ import annotations

import hashlib
import html
import math
import re
from collections.abc import Mapping, Sequence

from trialcoord.kernel.problems import InvalidInput, Problem
from trialcoord.kernel.render.fonts import FONT_STACK

WIDTH = 600
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#F0E442", "#000000")  # Okabe-Ito
ON_PALETTE = ("#fff", "#000", "#000", "#000", "#000", "#000", "#000", "#fff")  # the more legible text on each
INK, MUTED, GRID = "#1f2937", "#4b5563", "#d1d5db"
_LEFT, _RIGHT, _TOP, _PLOT_HEIGHT = 52, 12, 52, 220
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")  # not even escapable in XML 1.0


def chart_of_spec(spec: Mapping) -> str:
    """The chart a document's data specifies (its `charts` items), as SVG; InvalidInput naming `charts` when it
    cannot be drawn. Kinds: stacked (periods, series), bars (items of [label, value]), histogram (values, bins
    of [lo, hi or null])."""
    try:
        kind, title = spec["kind"], str(spec["title"])
        if kind == "stacked":
            return stacked_bars(
                title,
                [str(p) for p in spec["periods"]],
                {str(k): list(v) for k, v in spec["series"].items()},
                y_label=str(spec.get("y_label") or ""),
            )
        if kind == "bars":
            return bars(
                title, [(str(label), value) for label, value in spec["items"]], unit=str(spec.get("unit") or "")
            )
        if kind == "histogram":
            bins = [(lo, math.inf if hi is None else hi) for lo, hi in spec["bins"]] if spec.get("bins") else None
            return histogram(title, list(spec["values"]), bins, unit=str(spec.get("unit") or "days"))
        raise ValueError(f"unknown kind {kind!r}; one of stacked, bars, histogram")
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as error:
        raise InvalidInput([Problem(f"cannot be drawn: {error}", field="charts")]) from None


def stacked_bars(title: str, periods: list[str], series: dict[str, list[int]], *, y_label: str = "") -> str:
    """One bar per period (x), stacked by series (e.g. deviations per month by category), with a legend."""
    for name, counts in series.items():
        if len(counts) != len(periods):
            raise ValueError(f"series {name!r} has {len(counts)} values for {len(periods)} periods")
        _check(counts)
    _check([v for counts in series.values() for v in counts])  # a stack's total must be finite too
    uid = _uid("stacked", title, periods, series, y_label)
    if not periods or not series:
        return _no_data(title, uid)
    names = list(series)
    stacks = [[series[name][i] for name in names] for i in range(len(periods))]
    desc = f"{_capital(y_label) or 'Values'} by period. " + " ".join(
        f"{period}: {_stack_in_words(names, stack)}." for period, stack in zip(periods, stacks)
    )
    return _columns(title, periods, stacks, names, y_label, desc, uid, integer=True)


def bars(title: str, items: list[tuple[str, float]], *, unit: str = "", horizontal: bool = True) -> str:
    """One bar per item (e.g. deviations by site, or median days to closure by site)."""
    _check([value for _, value in items])
    uid = _uid("bars", title, items, unit, horizontal)
    if not items:
        return _no_data(title, uid)
    suffix = f" {unit}" if unit else ""
    desc = " ".join(f"{label}: {_num(value)}{suffix}." for label, value in items)
    if not horizontal:
        return _columns(
            title,
            [label for label, _ in items],
            [[value] for _, value in items],
            [],
            unit,
            desc,
            uid,
            integer=all(float(v).is_integer() for _, v in items),
        )
    return _rows(title, items, unit, desc, uid)


def histogram(
    title: str, values: list[float], bins: list[tuple[float, float]] | None = None, *, unit: str = "days"
) -> str:
    """How many values fall in each bin, a bin holding lo <= value < hi (hi may be math.inf: "30+").

    Without bins, equal round-width bins cover the values (e.g. time to closure in steps of 5 days).
    """
    _check(values, negative_ok=True)
    if bins is not None and not bins:
        raise ValueError("a histogram needs at least one bin")
    uid = _uid("histogram", title, values, bins, unit)
    if not values:
        return _no_data(title, uid)
    bins = bins if bins is not None else _default_bins(values)
    for lo, hi in bins:
        if not (math.isfinite(lo) and lo < hi):
            raise ValueError(f"a bin needs a finite start below its end, not ({lo}, {hi})")
    counts = [sum(1 for v in values if lo <= v < hi) for lo, hi in bins]
    # whole numbers in whole bins: "8–30" holds 8 to 30, as people read it; otherwise "7–30" is [7, 30)
    whole = all(float(v).is_integer() for v in values) and all(
        float(edge).is_integer() for lo, hi in bins for edge in (lo, hi) if math.isfinite(edge)
    )
    labels = [f"{_num(lo)}+" if math.isinf(hi) else f"{_num(lo)}–{_num(hi - 1 if whole else hi)}" for lo, hi in bins]
    words = [
        f"{_num(lo)} {unit} or more"
        if math.isinf(hi)
        else f"from {_num(lo)} to {_num(hi - 1)} {unit}"
        if whole
        else f"from {_num(lo)} to under {_num(hi)} {unit}"
        for lo, hi in bins
    ]
    desc = f"{len(values)} values. " + " ".join(f"{_capital(w)}: {c}." for w, c in zip(words, counts))
    outside = len(values) - sum(counts)
    if outside:
        desc += f" {outside} outside these bins, not shown."
    return _columns(title, labels, [[c] for c in counts], [], "count", desc, uid, integer=True, x_label=unit)


def _stack_in_words(names: list[str], stack: list[int]) -> str:
    total = f"{_num(sum(stack))} in all"
    return total if len(names) < 2 else f"{total} ({', '.join(f'{n} {_num(v)}' for n, v in zip(names, stack))})"


def nice_ticks(top: float, count: int = 5, *, integer: bool = False) -> list[float]:
    """0, then steps of 1, 2 or 5 times a power of ten, up to the first tick at or above `top`."""
    step = _step(top / count, integer)
    return [round(i * step, 10) for i in range(max(1, math.ceil(top / step - 1e-9)) + 1)]


def _step(raw: float, integer: bool) -> float:
    if raw <= 0:
        return 1
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw * (1 - 1e-9))
    return max(step, 1) if integer else step


def _default_bins(values: list[float]) -> list[tuple[float, float]]:
    lo, hi = min(values), max(values)
    step = _step((hi - lo) / 8, all(float(v).is_integer() for v in values))
    start = math.floor(lo / step) * step
    return [
        (round(start + i * step, 10), round(start + (i + 1) * step, 10))
        for i in range(math.floor((hi - start) / step + 1e-9) + 1)
    ]


def _columns(
    title: str,
    labels: list[str],
    stacks: Sequence[Sequence[float]],
    names: list[str],
    y_label: str,
    desc: str,
    uid: str,
    *,
    integer: bool,
    x_label: str = "",
) -> str:
    """Vertical bars, one per label, each a stack of segments (one per name); its total written above it."""
    ticks = nice_ticks(max(sum(stack) for stack in stacks), integer=integer)
    bottom, right = _TOP + _PLOT_HEIGHT, WIDTH - _RIGHT

    def y(v: float) -> float:
        return bottom - v / ticks[-1] * _PLOT_HEIGHT

    out = [_text_at(_LEFT, _TOP - 16, y_label, 11, MUTED)] if y_label else []
    for t in ticks:
        out.append(f'<line x1="{_LEFT}" y1="{_f(y(t))}" x2="{right}" y2="{_f(y(t))}" stroke="{GRID}"/>')
        out.append(_text_at(_LEFT - 6, y(t) + 4, _num(t), 11, MUTED, "end"))
    slot = (right - _LEFT) / len(labels)
    width, every = min(slot * 0.7, 64), math.ceil((max(len(_short(label, 16)) for label in labels) * 6.5 + 8) / slot)
    for i, (label, stack) in enumerate(zip(labels, stacks)):
        centre, top = _LEFT + slot * (i + 0.5), float(bottom)
        out.append(f"<g><title>{_text(label)}: {_num(sum(stack))}</title>")
        for j, value in enumerate(stack):
            height = value / ticks[-1] * _PLOT_HEIGHT
            if value > 0:
                out.append(
                    f'<rect class="bar" x="{_f(centre - width / 2)}" y="{_f(top - height)}" '
                    f'width="{_f(width)}" height="{_f(height)}" fill="{PALETTE[j % 8]}"/>'
                )
                if len(names) > 1 and height >= 14:
                    out.append(_text_at(centre, top - height / 2 + 4, _num(value), 10, ON_PALETTE[j % 8], "middle"))
            top -= height
        out.append(_text_at(centre, top - 4, _num(sum(stack)), 11, INK, "middle", bold=True) + "</g>")
        if i % every == 0:
            out.append(_text_at(centre, bottom + 16, _short(label, 16), 11, INK, "middle"))
    out.append(f'<line x1="{_LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="{MUTED}"/>')
    height = bottom + 24
    if x_label:
        out.append(_text_at(right, bottom + 34, x_label, 11, MUTED, "end"))
        height += 14
    if names:
        x: float = _LEFT
        height += 10
        for j, name in enumerate(names):
            room = 20 + len(_short(name, 30)) * 6.5 + 16
            if x + room > WIDTH and x > _LEFT:
                x, height = _LEFT, height + 18
            out.append(f'<rect x="{_f(x)}" y="{height - 10}" width="12" height="12" fill="{PALETTE[j % 8]}"/>')
            out.append(_text_at(x + 18, height, _short(name, 30), 11, INK))
            x += room
        height += 10
    return _svg(title, desc, height, out, uid)


def _rows(title: str, items: list[tuple[str, float]], unit: str, desc: str, uid: str) -> str:
    """Horizontal bars, one row per item, its value written after the bar."""
    ticks = nice_ticks(max(v for _, v in items), integer=all(float(v).is_integer() for _, v in items))
    left, right, row = 150, WIDTH - 56, 24
    bottom = _TOP + row * len(items)

    def x(v: float) -> float:
        return left + v / ticks[-1] * (right - left)

    out = [_text_at(right, _TOP - 12, unit, 11, MUTED, "end")] if unit else []
    for t in ticks:
        out.append(f'<line x1="{_f(x(t))}" y1="{_TOP}" x2="{_f(x(t))}" y2="{bottom}" stroke="{GRID}"/>')
        out.append(_text_at(x(t), bottom + 16, _num(t), 11, MUTED, "middle"))
    for i, (label, value) in enumerate(items):
        top = _TOP + row * i
        out.append(f"<g><title>{_text(label)}: {_num(value)}{' ' + _text(unit) if unit else ''}</title>")
        out.append(_text_at(left - 8, top + 16, _short(label, 22), 11, INK, "end"))
        out.append(
            f'<rect class="bar" x="{left}" y="{top + 5}" width="{_f(x(value) - left)}" height="14" '
            f'fill="{PALETTE[0]}"/>'
        )
        out.append(_text_at(x(value) + 4, top + 16, _num(value), 11, INK, bold=True) + "</g>")
    out.append(f'<line x1="{left}" y1="{_TOP}" x2="{left}" y2="{bottom}" stroke="{MUTED}"/>')
    return _svg(title, desc, bottom + 26, out, uid)


def _svg(title: str, desc: str, height: float, body: list[str], uid: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="{uid}-title {uid}-desc" '
        f'viewBox="0 0 {WIDTH} {_f(height)}" width="{WIDTH}" height="{_f(height)}" font-family="{FONT_STACK}">'
        f'<title id="{uid}-title">{_text(title)}</title><desc id="{uid}-desc">{_text(desc)}</desc>'
        + _text_at(0, 18, _short(title, 68), 15, INK, bold=True)
        + "".join(body)
        + "</svg>"
    )


def _no_data(title: str, uid: str) -> str:
    box = f'<rect x="0.5" y="30.5" width="{WIDTH - 1}" height="80" rx="6" fill="#f9fafb" stroke="{GRID}"/>'
    return _svg(title, "No data yet.", 120, [box, _text_at(WIDTH / 2, 76, "No data yet", 14, MUTED, "middle")], uid)


def _text_at(x: float, y: float, text: str, size: int, fill: str, anchor: str = "start", *, bold: bool = False) -> str:
    weight = ' font-weight="bold"' if bold else ""
    return (
        f'<text x="{_f(x)}" y="{_f(y)}" font-size="{size}" fill="{fill}" text-anchor="{anchor}"{weight}>'
        f"{_text(text)}</text>"
    )


def _check(values: Sequence[float], negative_ok: bool = False) -> None:
    """Finite numbers (of 0 or more) whose sum is finite too: a bar's height divides by it. An integer too big
    for a float (OverflowError) is refused as a ValueError like infinity."""
    try:
        for v in values:
            if not math.isfinite(v) or (v < 0 and not negative_ok):
                raise ValueError(
                    f"a chart value must be a finite number{'' if negative_ok else ' of 0 or more'}, not {v}"
                )
        if not math.isfinite(math.fsum(map(float, values))) or not math.isfinite(
            math.fsum(map(abs, map(float, values)))
        ):
            raise ValueError("the chart values add up to more than a number can hold")
    except OverflowError:
        raise ValueError("a chart value must be a finite number, not one too large to draw") from None


def _uid(*args: object) -> str:
    """An element id from the arguments: stable, and distinct for the different charts of one page."""
    return "chart-" + hashlib.sha256(repr(args).encode()).hexdigest()[:12]


def _text(value: object) -> str:
    """Escaped for XML text and attributes; characters XML cannot carry at all are dropped."""
    return html.escape(_NOT_XML.sub("", str(value)), quote=True)


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _short(label: str, limit: int) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _num(value: float) -> str:
    """12, 1,250, 3.5: thousands separated, at most two decimals, no trailing zeros."""
    text = f"{value:,.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _f(coordinate: float) -> str:
    return f"{coordinate:.1f}".removesuffix(".0")
