"""Token-aware splitting with the model's own tokenizer (loaded alone: no model, no torch).

Long texts are tokenised segment by segment (about SEGMENT_CHARS characters, cut at whitespace),
so a 10 MB document never holds millions of token offsets at once. Chunk ends are moved back to
a word boundary so no word is cut in two; consecutive chunks overlap by `overlap` tokens.
"""

import json
import os
from collections.abc import Iterator
from typing import Any

from memex_db.errors import InvalidParameter
from memex_db.plpy_types import GD

SEGMENT_CHARS = 64_000
DEFAULT_MAX_TOKENS = 200
DEFAULT_OVERLAP = 32
SPECIAL_TOKENS = 2  # [CLS] and [SEP] take two of the model's positions
# A chunk holds at most this many characters per token of its size: a tokenizer may count a
# 10,000-character "word" (no space, WordPiece's [UNK]) as one token, and one such chunk would
# cost the model and every batch it is in as much as thousands of chunks.
CHARS_PER_TOKEN = 16


def _model_max_tokens(model_dir: str) -> int:
    path = os.path.join(model_dir, "sentence_bert_config.json")
    try:
        with open(path, encoding="utf-8") as handle:
            return int(json.load(handle).get("max_seq_length", 512))
    except OSError:
        return 512


def wordpiece(model_dir: str) -> tuple[Any, int]:
    """(tokenizer, largest chunk in tokens) of a transformer model directory."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer, _model_max_tokens(model_dir) - SPECIAL_TOKENS


def load_tokenizer(gd: GD, model: str) -> tuple[Any, int]:
    """(tokenizer, largest chunk in tokens) for `model` (its provider's), cached per backend."""
    cache: dict[str, tuple[Any, int]] = gd.setdefault("memex_tokenizers", {})
    if model not in cache:
        from memex_db import providers

        cache[model] = providers.for_model(model).tokenizer(model)
    return cache[model]


def _segments(text: str) -> Iterator[tuple[int, str]]:
    start = 0
    while start < len(text):
        end = min(start + SEGMENT_CHARS, len(text))
        if end < len(text):
            cut = text.rfind("\n", start + SEGMENT_CHARS // 2, end)
            if cut < 0:
                cut = text.rfind(" ", start + SEGMENT_CHARS // 2, end)
            end = cut + 1 if cut >= 0 else end
        yield start, text[start:end]
        start = end


def chunk(tokenizer: Any, cap: int, text: str, max_tokens: int | None,
          overlap: int | None) -> Iterator[tuple[int, str, int]]:  # fmt: skip
    size = DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
    size = min(size, cap) if max_tokens is None else size
    lap = min(DEFAULT_OVERLAP, size // 4) if overlap is None else overlap
    if not 1 <= size <= cap:
        raise InvalidParameter(
            f"max_tokens must be between 1 and {cap} (the model's maximum sequence length "
            f"minus its special tokens), not {size}"
        )
    if not 0 <= lap < size:
        raise InvalidParameter(
            f"overlap must be >= 0 and smaller than max_tokens ({size}), not {lap}"
        )
    # At most half a chunk repeats the one before: each chunk then moves on by at least half
    # its size, so the chunks of a text hold at most 1.5 times its tokens (plus one chunk).
    lap = min(lap, size // 2)
    # Validated now, generated lazily: errors above reach the caller before any row.
    return _generate(tokenizer, text, size, lap)


def _generate(tokenizer: Any, text: str, size: int, lap: int) -> Iterator[tuple[int, str, int]]:
    ord_ = 0
    max_chars = size * CHARS_PER_TOKEN
    for _base, segment in _segments(text):
        enc = tokenizer.encode(segment, add_special_tokens=False)
        offsets, words, n = enc.offsets, enc.word_ids, len(enc.ids)
        start = 0
        while start < n:
            end = min(start + size, n)
            if end < n:  # do not cut a word in two (unless one word fills the window)
                e = end
                while e > start + 1 and words[e] is not None and words[e] == words[e - 1]:
                    e -= 1
                end = e if e > start + size // 2 else end
            content = segment[offsets[start][0] : offsets[end - 1][1]].strip()
            for piece, tokens in _within_chars(tokenizer, content, end - start, max_chars):
                yield ord_, piece, tokens
                ord_ += 1
            if end >= n:
                break
            # The next chunk starts `lap` tokens back, moved to a word's start, but always at
            # least half this chunk on; and a chunk that is one "word" from end to end has no
            # word to move to: a tokenizer that reports a whole segment as one word (wordllama)
            # moved each chunk on by one token, 2,202 chunks for 9,000 characters.
            nxt = max(end - lap, start + 1)
            if words[start] is None or words[start] != words[end - 1]:
                floor = start + max(1, (end - start) // 2)
                while nxt > floor and words[nxt] is not None and words[nxt] == words[nxt - 1]:
                    nxt -= 1
            start = nxt
        del enc, offsets, words


def _within_chars(
    tokenizer: Any, content: str, tokens: int, max_chars: int
) -> Iterator[tuple[str, int]]:
    """The chunk, or, past max_chars characters, its pieces of at most max_chars (cut at a
    space where there is one), each with its own token count."""
    if not content:
        return
    if len(content) <= max_chars:
        yield content, tokens
        return
    rest = content
    while rest:
        cut = len(rest) if len(rest) <= max_chars else rest.rfind(" ", max_chars // 2, max_chars)
        cut = max_chars if cut <= 0 else cut
        piece, rest = rest[:cut].strip(), rest[cut:].lstrip()
        if piece:
            yield piece, len(tokenizer.encode(piece, add_special_tokens=False).ids)
