"""HTML to plain text with the standard library: visible text only, blocks on their own lines."""

from __future__ import annotations

import re
from html.parser import HTMLParser

# Elements whose content is never visible text.
_HIDDEN = {"script", "style", "noscript", "template", "svg", "head", "iframe", "object"}
# Elements that start a new line (so words from adjacent blocks never run together).
_BLOCK = {
    "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "fieldset",
    "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
    "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "tr", "td", "th", "ul",
}  # fmt: skip


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden_depth = 0
        self.in_title = False
        self.title = ""
        self.first_h1 = ""
        self.in_h1 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self.in_title = True
        elif tag in _HIDDEN:
            self.hidden_depth += 1
        if tag == "h1" and not self.first_h1:
            self.in_h1 = True
        if tag in _BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        elif tag in _HIDDEN and self.hidden_depth:
            self.hidden_depth -= 1
        if tag == "h1":
            self.in_h1 = False
        if tag in _BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title += data
        elif not self.hidden_depth:
            self.parts.append(data)
            if self.in_h1:
                self.first_h1 += data


def html_to_text(html: str) -> tuple[str, str | None]:
    """The visible text (one block per line, blank lines collapsed) and the page's title."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = (
        re.sub(r"[ \t\r\f\v\u00a0]+", " ", line).strip()
        for line in "".join(parser.parts).split("\n")
    )
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    title = " ".join(parser.title.split()) or " ".join(parser.first_h1.split()) or None
    return text, title
