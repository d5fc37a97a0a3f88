"""Documents: .txt, .md, .html, .pdf and source files to text, a title and metadata."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import yaml

from memex.code_files import CODE_FILES
from memex.ingest.html_text import html_to_text
from memex.ingest.items import Document, FileRejected, FileSkipped, reject_nul

# A meta-refresh page with less text than this is a redirect stub, not a document.
REDIRECT_TEXT = 1000
MIME_BY_SUFFIX = {
    ".txt": "text/plain",
    ".text": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".pdf": "application/pdf",
}
# Source files are read as text; the database marks their chunks domain 'code' by the uri's
# extension from the same list (memex._document_domain), so a code space embeds them.
MIME_BY_SUFFIX.update(CODE_FILES)

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(?P<yaml>.*?)\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_MARKDOWN_H1 = re.compile(r"^#\s+(?P<title>.+?)\s*#*\s*$", re.MULTILINE)
# Metadata keys ingest sets itself: front matter cannot replace them.
RESERVED_KEYS = {"mime", "source_path", "pages"}
# A text file's first line is its title when it reads like one.
TITLE_LINE_CHARS = 120
# Titles from files (a page's <title>, a PDF's metadata) are cut here; the database refuses
# titles over 1,000 characters.
TITLE_CHARS = 300


def decode_text(data: bytes, what: str = "file") -> str:
    """UTF-8 (a BOM is dropped); anything else is named, not guessed."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileRejected(
            f"{what} is not valid UTF-8 (byte {exc.start}: {exc.reason}); convert it to UTF-8 first"
        ) from exc
    reject_nul(text, what)
    return text


def front_matter(text: str) -> tuple[dict[str, Any], str]:
    """A Markdown file's YAML front matter (`---` ... `---` at its very start) as metadata, and
    the text after it: the block is data, not prose to search and quote."""
    found = _FRONT_MATTER.match(text)
    if not found:
        return {}, text
    try:
        data = yaml.safe_load(found["yaml"])
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 2})" if mark is not None else ""
        raise FileRejected(f"front matter is not valid YAML{where}: fix it, or remove the "
                           "--- lines around it") from None  # fmt: skip
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise FileRejected("front matter is not a YAML mapping (key: value lines)")
    # YAML dates and times become ISO strings: metadata is JSON
    plain: dict[str, Any] = json.loads(json.dumps(data, default=str))
    return plain, text[found.end() :]


def markdown_title(text: str) -> str | None:
    found = _MARKDOWN_H1.search(text[:4000])
    return found["title"] if found else None


def text_title(text: str) -> str | None:
    """A plain text's first line, when it reads as a title (short, not a sentence running on)."""
    first = text.lstrip().split("\n", 1)[0].strip()
    return first if 0 < len(first) <= TITLE_LINE_CHARS else None


def pdf_text(data: bytes) -> tuple[str, str | None, int]:
    """Text of every page (pypdf, pure Python), the PDF's own title, and the page count."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise FileRejected("PDF is encrypted; decrypt it first (e.g. qpdf --decrypt)")
        pages = [page.extract_text() or "" for page in reader.pages]
        title = reader.metadata.title if reader.metadata else None
    except FileRejected:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise FileRejected(f"not a readable PDF: {exc}") from exc
    text = "\n\n".join(page.strip() for page in pages if page.strip())
    if pages and not text:
        raise FileRejected(
            f"PDF has {len(pages)} page(s) but no extractable text (scanned images? OCR it first)"
        )
    return text, (str(title).strip() or None) if title else None, len(pages)


def _text_or_none(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def read_document(
    path: Path, uri: str, folder: str | None, extra_metadata: dict[str, Any]
) -> Document:
    suffix = path.suffix.lower()
    mime = MIME_BY_SUFFIX[suffix]
    data = path.read_bytes()
    # Where the file is: a re-ingest from another directory finds the document by it and keeps
    # its uri (memex.ingest.run.keep_stored_uri).
    metadata: dict[str, Any] = {"mime": mime, "source_path": str(path.resolve()), **extra_metadata}
    if suffix == ".pdf":
        text, title, pages = pdf_text(data)
        metadata["pages"] = pages
    elif suffix in (".html", ".htm"):
        page = html_to_text(decode_text(data))
        if page.redirect is not None and len(page.text) < REDIRECT_TEXT:
            raise FileSkipped(f"a redirect page (to {page.redirect})")
        text, title = page.text, page.title
    elif mime == "text/markdown":
        fields, text = front_matter(decode_text(data))
        title = _text_or_none(fields.pop("title", None)) or markdown_title(text)
        metadata = {**{k: v for k, v in fields.items() if k not in RESERVED_KEYS}, **metadata}
        if "language" not in extra_metadata and isinstance(fields.get("lang"), str):
            metadata.setdefault("language", fields["lang"])
    else:
        text = decode_text(data)
        title = text_title(text) if mime == "text/plain" else None
    reject_nul(text, "extracted text")
    if not text.strip():
        raise FileSkipped("empty: no text to ingest")
    return Document(uri=uri, content=text, title=clean_title(title) or clean_title(path.stem),
                    metadata=metadata, folder=folder)  # fmt: skip


def clean_title(value: str | None) -> str | None:
    """A title as one line of at most TITLE_CHARS: whitespace and control characters (from a
    page's <title>, a PDF's metadata, a file name) become single spaces; a longer one is cut."""
    if not value:
        return None
    text = " ".join("".join(c if c.isprintable() else " " for c in value).split())
    if len(text) > TITLE_CHARS:
        text = text[: TITLE_CHARS - 1].rstrip() + "…"
    return text or None
