"""HTML pieces of the report page (docs/figures.md, "Report"): every text is escaped here, every image is a
data: URI, and the page forbids any request (Content-Security-Policy), so it opens offline from the file system."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# No request of any kind: images come as data: URIs, the style is inline.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 82rem;
       padding: 0 1rem; color: #1b1b1b; line-height: 1.4; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.3rem; margin-top: 2.5rem; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.05rem; margin-top: 1.6rem; }
nav a { margin-right: 1rem; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.85rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: center; white-space: nowrap; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
tr.average td { font-weight: 600; border-top: 2px solid #888; }
td.best { font-weight: 700; } td.second { text-decoration: underline; } th.bound { font-style: italic; }
.note { color: #555; font-size: 0.85rem; max-width: 70rem; }
.error { color: #a00; }
.gallery { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; } figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: 0.85rem; color: #333; }
.plots img { max-width: 48rem; width: 100%; height: auto; }
"""


def png_uri(fig: Figure, dpi: int = 100) -> str:
    """The figure as a PNG data: URI."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def image(uri: str, alt: str, caption: str | None = None) -> str:
    """An <img> (in a <figure> with a caption when given); `uri` must be a data: URI."""
    if not uri.startswith("data:image/"):
        raise ValueError("report images are embedded as data: URIs")
    tag = f'<img src="{escape(uri)}" alt="{escape(alt)}">'
    return f"<figure>{tag}<figcaption>{escape(caption)}</figcaption></figure>" if caption is not None else tag


def table(
    head: Sequence[Sequence[tuple[str, int] | tuple[str, int, str]]],
    rows: Sequence[Sequence[str]],
    row_classes: Sequence[str] | None = None,
    marked: Mapping[tuple[int, int], str] | None = None,
) -> str:
    """A <table>: `head` rows of (text, column span[, CSS class]), body `rows` of texts; `row_classes` gives each
    body row a CSS class ("average"), `marked` a CSS class to (row, column) cells ("best", "second")."""
    out = ["<table>", "<thead>"]
    for line in head:
        out.append("<tr>" + "".join(_cell("th", cell[0], cell[1], cell[2] if len(cell) > 2 else "") for cell in line))
    out.append("</thead><tbody>")
    for i, row in enumerate(rows):
        kind = f' class="{escape(row_classes[i])}"' if row_classes and row_classes[i] else ""
        cells = "".join(_cell("td", text, 1, (marked or {}).get((i, j), "")) for j, text in enumerate(row))
        out.append(f"<tr{kind}>{cells}</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _cell(tag: str, text: str, span: int, kind: str) -> str:
    attributes = (f' colspan="{span}"' if span > 1 else "") + (f' class="{escape(kind)}"' if kind else "")
    return f"<{tag}{attributes}>{escape(text)}</{tag}>"


def heading(text: str, level: int = 3) -> str:
    return f"<h{level}>{escape(text)}</h{level}>"


def paragraph(text: str, kind: str = "note") -> str:
    return f'<p class="{escape(kind)}">{escape(text)}</p>'


def section(anchor: str, title: str, body: Sequence[str]) -> str:
    return "\n".join([f'<section id="{escape(anchor)}">', f"<h2>{escape(title)}</h2>", *body, "</section>"])


def page(title: str, intro: Sequence[str], sections: Sequence[tuple[str, str, str]]) -> str:
    """The whole page: `sections` are (anchor, title, HTML body), linked from a navigation bar."""
    nav = " ".join(f'<a href="#{escape(anchor)}">{escape(name)}</a>' for anchor, name, _ in sections)
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{escape(CSP)}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{escape(title)}</title>",
            f"<style>{STYLE}</style>",
            "</head>",
            "<body>",
            f"<h1>{escape(title)}</h1>",
            *intro,
            f"<nav>{nav}</nav>",
            *(section(anchor, name, [body]) for anchor, name, body in sections),
            "</body>",
            "</html>",
            "",
        ]
    )
