"""HTML to plain text: the page's main content, blocks on their own lines, code kept verbatim.

Parsing is selectolax's (lexbor, an HTML5 parser): what browsers do with real pages (an omitted
`</head>`, unclosed paragraphs) it does too. Then:
- the main content is `<main>`, else `[role=main]`, else `<article>`, else `<body>`; inside
  it, navigation, banners, footers and asides are dropped (site chrome repeated on every page:
  menus, "Keyboard shortcuts" help, next/previous links);
- `<pre>` keeps its text as it is (indentation is meaning in code); elsewhere runs of
  whitespace become one space and each block element starts a new line;
- the title is `<title>` without the site's name when the content's first `<h1>` is the rest
  of it ("Lifetimes - The Rust Book" with `<h1>Lifetimes</h1>` gives "Lifetimes");
- a meta-refresh page (a redirect stub) is reported as one, with its target.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from selectolax.lexbor import LexborHTMLParser, LexborNode

# Elements whose content is never visible text.
_HIDDEN = {"script", "style", "noscript", "template", "svg", "head", "iframe", "object", "title"}
# Site chrome, dropped inside the main content too.
_CHROME = "nav, aside, footer, [role=navigation], [role=banner], [role=contentinfo], [hidden]"
# Outside a <main>/<article> (the body as a whole), the page header is chrome as well.
_BODY_CHROME = _CHROME + ", header"
_MAIN = ("main", "[role=main]", "article")
# Elements that start a new line (so words from adjacent blocks never run together).
_BLOCK = {
    "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "fieldset",
    "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
    "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "tr", "td", "th", "ul",
}  # fmt: skip
_TITLE_SEPARATORS = re.compile(r"\s+[-|–—·:]\s+")
_REFRESH_URL = re.compile(r"url\s*=\s*['\"]?([^'\";]+)", re.IGNORECASE)


@dataclass(frozen=True)
class HtmlText:
    text: str
    title: str | None
    redirect: str | None = None  # the target of a meta-refresh page


def _collapse(text: str) -> str:
    """Blank lines collapsed, spaces collapsed and trimmed on every line."""
    lines = (re.sub(r"[ \t\r\f\v\u00a0]+", " ", line).strip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _blocks(root: LexborNode) -> list[str]:
    """The text under `root` as blocks: prose (collapsed) and <pre> contents (verbatim)."""
    blocks: list[str] = []
    prose: list[str] = []

    def flush() -> None:
        text = _collapse("".join(prose))
        if text:
            blocks.append(text)
        prose.clear()

    # Depth-first, without recursion (deeply nested pages exist): (node, entering?)
    stack: list[tuple[LexborNode, bool]] = [(root, True)]
    while stack:
        node, entering = stack.pop()
        if node.is_text_node:
            prose.append((node.text_content or "").replace("\n", " "))  # HTML whitespace
            continue
        if not node.is_element_node and node is not root:
            continue
        tag = node.tag or ""
        if tag in _HIDDEN:
            continue
        if tag == "br":
            prose.append("\n")
            continue
        if tag == "pre":
            flush()
            code = (node.text(deep=True) or "").strip("\n").rstrip()
            if code.strip():
                blocks.append(code)
            continue
        if not entering:
            prose.append("\n")
            continue
        if tag in _BLOCK:
            prose.append("\n")
            stack.append((node, False))
        children = []
        child = node.child
        while child is not None:
            children.append(child)
            child = child.next
        stack.extend((c, True) for c in reversed(children))
    flush()
    return blocks


def _with_text(root: LexborNode) -> set[int]:
    """The elements under `root` (by mem_id) that hold visible text somewhere below them, in
    one pass: asking each candidate for its text re-read every nested one (20,000 nested empty
    <article>s: quadratic, seconds)."""
    found: set[int] = set()
    stack: list[tuple[LexborNode, bool]] = [(root, True)]
    while stack:
        node, entering = stack.pop()
        if node.is_text_node:
            if (node.text_content or "").strip() and node.parent is not None:
                found.add(node.parent.mem_id)
            continue
        if entering:
            stack.append((node, False))
            child = node.child
            while child is not None:
                stack.append((child, True))
                child = child.next
        elif node.mem_id in found and node.parent is not None:
            found.add(node.parent.mem_id)
    return found


def _main_content(tree: LexborHTMLParser) -> LexborNode | None:
    with_text = _with_text(tree.root) if tree.root is not None else set()
    for selector in _MAIN:
        for node in tree.css(selector):
            if node.mem_id in with_text:
                for chrome in node.css(_CHROME):
                    chrome.decompose()
                return node
    body = tree.body
    if body is not None:
        for chrome in body.css(_BODY_CHROME):
            chrome.decompose()
    return body


def _title(tree: LexborHTMLParser, root: LexborNode | None) -> str | None:
    """<title>, without the site's name when the content's first <h1> is the rest of it (an
    <h1> outside the content is often the site's name in a menu bar)."""
    node = tree.css_first("title")
    title = " ".join((node.text() if node else "").split())
    h1_node = root.css_first("h1") if root is not None else None
    h1 = " ".join((h1_node.text(deep=True) if h1_node else "").split())
    if title and h1:
        parts = _TITLE_SEPARATORS.split(title)
        if len(parts) > 1 and h1.casefold() in (p.casefold() for p in parts):
            return h1  # the rest is the site's name
    return title or h1 or None


def _redirect(tree: LexborHTMLParser) -> str | None:
    for meta in tree.css("meta[http-equiv]"):
        if (meta.attributes.get("http-equiv") or "").lower() == "refresh":
            found = _REFRESH_URL.search(meta.attributes.get("content") or "")
            if found:
                return found.group(1).strip()
    return None


def html_to_text(html: str) -> HtmlText:
    """The page's main content as text (one block per line, blank line between blocks), its
    title, and the target when the page is a meta-refresh redirect."""
    tree = LexborHTMLParser(html)
    redirect = _redirect(tree)
    root = _main_content(tree)
    title = _title(tree, root)
    text = "\n\n".join(_blocks(root)) if root is not None else ""
    return HtmlText(text=text, title=title, redirect=redirect)
