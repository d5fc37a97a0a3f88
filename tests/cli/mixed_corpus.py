"""A mixed directory for `memex ingest`: every supported kind of file, and some that are not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def minimal_pdf(lines: list[str], title: str = "Quarterly report") -> bytes:
    """A valid one-page PDF with real text objects (so pypdf extracts them), built by hand."""
    text_ops = " ".join(f"({line}) Tj 0 -16 Td" for line in lines)
    stream = f"BT /F1 12 Tf 72 720 Td {text_ops} ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Title (" + title.encode() + b") >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info 6 0 R >>\n".encode()
    out += f"startxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def chatgpt_export() -> list[dict[str, Any]]:
    """Two conversations shaped like ChatGPT's conversations.json; one has an abandoned branch."""

    def node(ident: str, parent: str | None, role: str | None, text: str, t: float) -> Any:
        message = None
        if role:
            message = {
                "id": ident,
                "author": {"role": role},
                "create_time": t,
                "content": {"content_type": "text", "parts": [text]},
                "metadata": {},
            }
        return {"id": ident, "parent": parent, "children": [], "message": message}

    first = {
        "root": node("root", None, None, "", 0),
        "m1": node("m1", "root", "user", "How do I rotate the database keys?", 1750000000),
        "m2-old": node("m2-old", "m1", "assistant", "ABANDONED BRANCH ANSWER", 1750000010),
        "m2": node("m2", "m1", "assistant", "New key, re-encrypt, retire the old.", 1750000020),
    }
    second = {
        "r": node("r", None, None, "", 0),
        "a": node("a", "r", "user", "Quelle heure est-il à Tokyo ?", 1750100000),
        "b": node("b", "a", "assistant", "Il est neuf heures de plus qu'à Paris.", 1750100005),
    }
    return [
        {"title": "Key rotation", "create_time": 1750000000, "conversation_id": "c-keys",
         "current_node": "m2", "mapping": first},
        {"title": "Tokyo", "create_time": 1750100000, "id": "c-tokyo", "current_node": "b",
         "mapping": second},
    ]  # fmt: skip


def artefact(level: int | None, summaries: list[dict[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {"version": 2, "slug": "2025-06-25__orage", "title": "Orage",
                           "date": "2025-06-25", "summaries": summaries}  # fmt: skip
    if level is not None:
        doc["level"] = level
    return doc


def build_mixed_directory(root: Path) -> Path:
    base = root / "handbook"
    (base / "ops").mkdir(parents=True)
    (base / "chats").mkdir()
    (base / ".git").mkdir()
    (base / ".git" / "config").write_text("[core]\n")
    (base / "keys.md").write_text("# Rotating keys\n\nRotate the signing keys every 90 days.\n")
    (base / "ops" / "backup.txt").write_text("Backups run nightly with pg_basebackup.\n")
    (base / "ops" / "page.html").write_text(
        "<html><head><title>On-call guide</title><style>p{color:red}</style>"
        "<script>var secret = 1;</script></head><body><h1>On call</h1>"
        "<p>Page the secondary after 15&nbsp;minutes.</p><p>Escalate &amp; log it.</p>"
        "</body></html>"
    )
    (base / "report.pdf").write_bytes(minimal_pdf(["Revenue grew by ten percent.", "Costs fell."]))
    (base / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    conversation = {
        "slug": "2025-06-25__orage", "title": "Orage", "date": "2025-06-25",
        "messages": [{"role": "user", "content": "Il y a un orage, je coupe le serveur ?"},
                     {"role": "assistant", "content": "Oui, arrête PostgreSQL d'abord."}],
    }  # fmt: skip
    (base / "chats" / "orage.json").write_text(json.dumps(conversation, ensure_ascii=False))
    level1 = artefact(1, [
        {"index": 0, "summary": "Storm: shut the server down cleanly.", "covers": [0, 1],
         "tags": ["ops"], "entities": {"others": ["PostgreSQL"]}},
    ])  # fmt: skip
    level2 = artefact(None, [{"index": 0, "summary": "Ops in bad weather.", "covers": [0]}])
    (base / "chats" / "2025-06-25__orage.l1.v2.json").write_text(json.dumps(level1))
    (base / "chats" / "2025-06-25__orage.l2.v2.json").write_text(json.dumps(level2))
    (base / "chats" / "conversations.json").write_text(json.dumps(chatgpt_export()))
    broken = json.dumps(artefact(1, [{"index": 0, "summary": "never stored"}]))
    (base / "chats" / "broken.l1.v2.json").write_text(broken[: len(broken) // 2])
    return base
