"""Writes docs/images/method.svg, the README's schematic of the method (run: python docs/images/make_method_svg.py).

Three domains' switches over the 16 input channels of one convolution: BA² alone (every domain picks its own
channels, their union is almost everything) vs. with the sharing loss (the domains agree, the union is small
and the rest is pruned). The masks are drawn by hand to illustrate, they are not measured.
"""

from pathlib import Path

C = 16
BA2 = ["1101001101100110", "0110110010110101", "1011010101011010"]
OURS = ["1111011000110000", "1110011001110000", "1111001000110000"]
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c"]
CELL, GAP = 18, 3


def panel(x0, y0, title, rows, kept_label):
    out = [f'<text x="{x0}" y="{y0 - 12}" font-size="15" font-weight="bold">{title}</text>']
    union = [any(r[c] == "1" for r in rows) for c in range(C)]
    for d, row in enumerate(rows):
        y = y0 + d * (CELL + GAP)
        out.append(f'<text x="{x0 - 8}" y="{y + 13}" font-size="12" text-anchor="end">domain {d + 1}</text>')
        for c in range(C):
            fill = COLORS[d] if row[c] == "1" else "#e6e6e6"
            out.append(f'<rect x="{x0 + c * (CELL + GAP)}" y="{y}" width="{CELL}" height="{CELL}" rx="3" fill="{fill}"/>')
    y = y0 + 3 * (CELL + GAP) + 10
    out.append(f'<text x="{x0 - 8}" y="{y + 13}" font-size="12" text-anchor="end">union</text>')
    for c in range(C):
        fill = "#444" if union[c] else "white"
        stroke = "" if union[c] else ' stroke="#bbb" stroke-dasharray="3,2"'
        out.append(f'<rect x="{x0 + c * (CELL + GAP)}" y="{y}" width="{CELL}" height="{CELL}" rx="3" fill="{fill}"{stroke}/>')
    out.append(f'<text x="{x0}" y="{y + CELL + 20}" font-size="12">{kept_label.format(sum(union), C)}</text>')
    return out


parts = [
    '<svg xmlns="http://www.w3.org/2000/svg" width="860" height="170" font-family="DejaVu Sans, Arial, sans-serif">',
    '<rect width="100%" height="100%" fill="white"/>',
]
parts += panel(80, 40, "BA²: a budget per domain", BA2, "union keeps {0}/{1} channels: nothing to prune")
parts += panel(520, 40, "+ sharing loss (ours)", OURS, "union keeps {0}/{1} channels: the rest is pruned")
parts.append("</svg>")
Path(__file__).with_name("method.svg").write_text("\n".join(parts) + "\n")
