"""Chunk domains: which chunks are code, so a code model's space embeds them (seed 003's dual
text/code embeddings). The rule (docs/embedding.md, "Domains"), applied when a source is chunked:

  1. a document whose metadata says `"domain": "text" | "code"`: every chunk is that;
  2. a document whose uri ends in a source-code extension (.py, .ts, .go, …): every chunk code;
  3. otherwise (markdown, plain text, messages, summaries): fenced blocks (``` or ~~~) are cut
     out as chunks of their own, domain code, and the prose between them is chunked apart; a
     prose chunk is code when most of its non-blank lines look like code (MOSTLY_CODE), which
     is how a pasted stack trace or an unfenced snippet in a chat message is caught.
Rules 1 and 2 are decided in SQL (memex._document_domain); this module does rule 3.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

DOMAINS = ("text", "code")
MOSTLY_CODE = 0.6  # share of non-blank lines that look like code

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})[^\n]*$", re.MULTILINE)
_CODE_LINE = re.compile(
    r"""^\s*(?:
        (?:def|class|import|from|return|if|elif|else|for|while|try|except|with|async|await|yield|
           function|const|let|var|fn|pub|impl|struct|enum|package|func|public|private|static|
           void|int|\#include|\#define|select|insert|update|delete|create)\b
      | [}\])]+[;,]?\s*$               # closing brackets
      | @\w+                           # decorators
      | \$\s                           # shell prompt
      | (?://|\#\!)                    # line comments, shebang
    )
    | [;{]\s*$                         # ends a statement or opens a block
    | ^\s*\w+(?:\.\w+)*\s*\(.*\)\s*;?\s*$   # a bare call
    | ^\s*\w+\s*(?:=|\+=|-=|:=)\s*\S   # an assignment
    | ^(?:\ {4}|\t)\S                  # indented block
    """,
    re.VERBOSE,
)


def looks_like_code(text: str) -> bool:
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return False
    coded = sum(1 for line in lines if _CODE_LINE.search(line))
    return coded / len(lines) >= MOSTLY_CODE


def split_fences(text: str) -> Iterator[tuple[str, str]]:
    """(domain, part) in order: fenced blocks (fences included) are code, the rest text. An
    unclosed fence runs to the end, as CommonMark reads it."""
    pos = 0
    opening = _FENCE.search(text, pos)
    while opening is not None:
        marker = opening.group("fence")
        closing = re.compile(rf"^ {{0,3}}{marker[0]}{{{len(marker)},}}[ \t]*$", re.MULTILINE)
        end_match = closing.search(text, opening.end())
        end = end_match.end() if end_match else len(text)
        if opening.start() > pos:
            yield "text", text[pos : opening.start()]
        yield "code", text[opening.start() : end]
        pos = end
        opening = _FENCE.search(text, pos)
    if pos < len(text):
        yield "text", text[pos:]
