"""Draw the documentation's figures from the library's own placement math.

    python docs/make_figures.py          # rewrites docs/_static/figure3.svg

``figure3.svg`` is the patent's Figure 3 placement: one owner's segment cut into 9
subsegments, 3 stripes of 3 (group 3) plus one XOR parity piece each, striped over 4 backups,
exactly as :func:`mpickpt.layout.parity_pieces` places them. The SVG is plain text written by
hand (no plotting library), so that it is the same on every machine; a test checks that the
committed file is what this script draws.
"""

from __future__ import annotations

import sys
from html import escape
from pathlib import Path

from mpickpt.layout import Piece, by_backup, parity_pieces

OUT = Path(__file__).resolve().parent / "_static" / "figure3.svg"
SUBSEGMENTS, GROUP, BACKUPS = 9, 3, 4
# (data fill, parity fill) per stripe
COLOURS = [("#d6e6f5", "#5b9bd5"), ("#fde3c8", "#ef9d4a"), ("#d9eed8", "#77b86f")]
BOX_W, BOX_H, GAP = 54, 30, 8


def _box(x: float, y: float, piece: Piece) -> str:
    data, parity = COLOURS[piece.stripe % len(COLOURS)]
    is_parity = piece.name.startswith("p")
    fill = parity if is_parity else data
    weight = ' font-weight="bold"' if is_parity else ""
    return (
        f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="4" fill="{fill}" '
        f'stroke="#333" stroke-width="1"/>'
        f'<text x="{x + BOX_W / 2}" y="{y + BOX_H / 2 + 5}" text-anchor="middle"{weight}>'
        f"{escape(piece.name)}</text>"
    )


def _text(x: float, y: float, s: str, anchor: str = "start", extra: str = "") -> str:
    return f'<text x="{x}" y="{y}" text-anchor="{anchor}"{extra}>{escape(s)}</text>'


def figure3_svg(subsegments: int = SUBSEGMENTS, group: int = GROUP, backups: int = BACKUPS) -> str:
    """The SVG text of the placement of ``parity_pieces(subsegments, group, backups)``."""
    pieces = parity_pieces(subsegments, group, backups)
    stripes = subsegments // group
    left = 20
    parts: list[str] = []

    # 1. the owner's segment, cut into subsegments, grouped into stripes
    y = 56
    parts.append(
        _text(
            left, 40, f"owner's segment: subsegments d0..d{subsegments - 1}, grouped into stripes"
        )
    )
    data = [p for p in pieces if p.name.startswith("d")]
    x_of: dict[int, float] = {}
    for p in data:
        x = left + p.sources[0] * (BOX_W + GAP) + p.stripe * 2 * GAP
        x_of[p.sources[0]] = x
        parts.append(_box(x, y, p))
    for s in range(stripes):
        x0 = x_of[s * group]
        x1 = x_of[(s + 1) * group - 1] + BOX_W
        parts.append(f'<path d="M{x0} {y + BOX_H + 6} v6 H{x1} v-6" fill="none" stroke="#666"/>')
        parts.append(_text((x0 + x1) / 2, y + BOX_H + 28, f"stripe {s}", "middle"))

    # 2. one parity piece per stripe
    y = 164
    parts.append(_text(left, y - 14, "parity: one XOR piece per stripe"))
    for i, p in enumerate(p for p in pieces if p.name.startswith("p")):
        x = left + i * (BOX_W + 150)
        parts.append(_box(x, y, p))
        xor = " \u2295 ".join(f"d{k}" for k in p.sources)
        parts.append(_text(x + BOX_W + 8, y + BOX_H / 2 + 5, f"= {xor}"))

    # 3. the backups: piece j of stripe s goes to backup (s + j) mod backups
    y = 250
    parts.append(
        _text(
            left,
            y - 14,
            f"{backups} backups on other failure domains: piece j of stripe s "
            f"goes to backup (s + j) mod {backups}",
        )
    )
    col_w = BOX_W + 70
    for b, held in enumerate(by_backup(pieces, backups)):
        x = left + b * (col_w + GAP)
        parts.append(
            f'<rect x="{x}" y="{y}" width="{col_w}" height="{len(held) * (BOX_H + GAP) + 34}" '
            f'rx="6" fill="#f7f7f7" stroke="#999"/>'
        )
        parts.append(
            _text(x + col_w / 2, y + 20, f"backup {b + 1}", "middle", ' font-weight="bold"')
        )
        for i, p in enumerate(held):
            parts.append(_box(x + (col_w - BOX_W) / 2, y + 30 + i * (BOX_H + GAP), p))

    tallest = max(len(h) for h in by_backup(pieces, backups))
    height = y + 30 + tallest * (BOX_H + GAP) + 40
    width = max(left + backups * (col_w + GAP), left + subsegments * (BOX_W + GAP) + 5 * GAP) + 10
    caption = (
        f"stored: {(group + 1) / group:.2f} x the segment; the owner and any one backup may be lost"
    )
    parts.append(_text(left, height - 14, caption, extra=' font-style="italic"'))
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="13">\n'
        f'<rect width="{width}" height="{height}" fill="white"/>\n'
    )
    return head + "\n".join(s for s in parts if s) + "\n</svg>\n"


def main() -> int:
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(figure3_svg())
    print(f"wrote {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
