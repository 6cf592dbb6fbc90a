"""A self-contained HTML page from sections of text, tables and PNG figures (embedded as base64).

No template engine and no external resources: the page opens offline in any
browser and can be mailed as one file.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Image", "Section", "Table", "cell", "render"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
figure { margin: 1em 0; } figure img { max-width: 100%; }
figcaption { font-size: .9em; color: #555; }
p.note { font-size: .9em; color: #555; }
nav a { margin-right: 1em; }
"""


@dataclass(frozen=True)
class Table:
    """A table: column headers and rows of cells (numbers are formatted, ``None`` shows as a dash)."""

    header: Sequence[str]
    rows: Sequence[Sequence[object]]
    caption: str = ""


@dataclass(frozen=True)
class Image:
    """A PNG figure and its caption."""

    png: bytes
    caption: str


@dataclass
class Section:
    """A heading and its blocks: paragraphs (str), :class:`Table` or :class:`Image`, in order."""

    title: str
    blocks: list[str | Table | Image] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        """The section's id in the page."""
        return "".join(c if c.isalnum() else "-" for c in self.title.lower())


def cell(value: object, digits: int = 3) -> str:
    """A value as table text: floats to ``digits`` decimals, ``None`` and NaN as a dash."""
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in table.header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell(v))}</td>" for v in row) + "</tr>" for row in table.rows
    )
    caption = f"<caption>{html.escape(table.caption)}</caption>" if table.caption else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image(image: Image) -> str:
    data = base64.b64encode(image.png).decode("ascii")
    alt = html.escape(image.caption.split(".")[0])
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">'
        f"<figcaption>{html.escape(image.caption)}</figcaption></figure>"
    )


def render(title: str, intro: str, sections: Sequence[Section]) -> str:
    """The whole page as one string.

    Parameters
    ----------
    title : str
        Page title and top heading.
    intro : str
        A paragraph under the heading.
    sections : sequence of Section
        Rendered in order, with a table of contents.
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p>{html.escape(intro)}</p>",
        "<nav>" + "".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections) + "</nav>",
    ]
    for section in sections:
        parts.append(f'<h2 id="{section.anchor}">{html.escape(section.title)}</h2>')
        for block in section.blocks:
            if isinstance(block, Table):
                parts.append(_table(block))
            elif isinstance(block, Image):
                parts.append(_image(block))
            else:
                parts.append(f'<p class="note">{html.escape(block)}</p>')
    parts.append("</body></html>")
    return "\n".join(parts)
