"""Validation of the JSON payloads of upsert_messages and upsert_summaries (artefact v2).

A payload is checked whole before anything is written; the first problem raises InvalidParameter
(SQLSTATE 22023) naming the field, e.g. `summaries[2].covers[1]: expected an integer or a string`.
"""

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from memex_db.errors import InvalidParameter

ROLES = ("user", "assistant", "system", "tool")
# Integer fields are stored as PostgreSQL integers: larger values are named here, not left to
# fail as 22003 deep in an INSERT.
MAX_INT = 2**31 - 1
MAX_TITLE_CHARS = 1000  # as upsert_document and upsert_conversation
MAX_NAME_CHARS = 200  # a speaker's name (memex.messages.name checks the same)
ARTEFACT_VERSION = 2


def _type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer",
             float: "number", type(None): "null"}  # fmt: skip
    return names.get(type(value), "value")


def _want(cond: bool, where: str, message: str) -> None:
    if not cond:
        raise InvalidParameter(f"{where}: {message}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _object(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    _want(isinstance(value, dict), where, f"expected an object, got {_type(value)}")
    result: dict[str, Any] = value
    return result


def _text(value: Any, where: str) -> str:
    _want(isinstance(value, str), where, f"expected a string, got {_type(value)}")
    text: str = value
    _want("\x00" not in text, where, "contains a NUL byte (PostgreSQL text cannot hold one)")
    return text


def _load(raw: str | Any, name: str) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise InvalidParameter(f"{name}: not valid JSON ({exc})") from None
    except RecursionError:  # jsonb nests far deeper than Python's decoder recurses
        raise InvalidParameter(f"{name}: JSON nested too deeply") from None


def check_messages(raw: str | Any, last_seq: int = 0) -> list[dict[str, Any]]:
    """Normalised messages sorted by seq; identical duplicates collapsed, conflicting refused.

    A message without `seq` is appended: in array order, it takes the next number after
    `last_seq` (the conversation's last message; 0 when it has none, so seq counts from 1) and
    after every seq the payload names. An agent that logs one turn per call never overwrites the
    turn before (docs/data-model.md, "Messages").
    """
    messages = _load(raw, "messages")
    _want(isinstance(messages, list), "messages", f"expected an array, got {_type(messages)}")
    parsed: list[tuple[str, int | None, dict[str, Any]]] = []
    for i, item in enumerate(messages):
        where = f"messages[{i}]"
        _want(isinstance(item, dict), where, f"expected an object, got {_type(item)}")
        unknown = set(item) - {"seq", "role", "name", "ts", "content", "metadata"}
        _want(not unknown, where, f"unknown key(s) {', '.join(sorted(unknown))}")
        seq = item.get("seq")
        if seq is not None:
            _want(_is_int(seq) and 0 <= seq <= MAX_INT, f"{where}.seq",
                  f"expected an integer from 0 to {MAX_INT}, got {seq!r}")  # fmt: skip
        role = item.get("role")
        _want(isinstance(role, str) and role in ROLES, f"{where}.role",
              f"unknown role {role!r} (expected one of {', '.join(ROLES)})")  # fmt: skip
        content = _text(item.get("content"), f"{where}.content")
        ts = item.get("ts")
        if ts is not None:
            _text(ts, f"{where}.ts")
            try:
                datetime.fromisoformat(ts.replace("Z", "+00:00"))
            except ValueError:
                raise InvalidParameter(f"{where}.ts: not an ISO 8601 timestamp: {ts!r}") from None
        name = item.get("name")
        if name is not None:
            _want(_text(name, f"{where}.name").strip() != "", f"{where}.name", "empty name")
            _want(len(name) <= MAX_NAME_CHARS, f"{where}.name",
                  f"{len(name)} characters; the limit is {MAX_NAME_CHARS}")  # fmt: skip
        message = {"role": role, "name": name, "ts": ts, "content": content,
                   "metadata": _object(item.get("metadata"), f"{where}.metadata")}  # fmt: skip
        parsed.append((where, seq, message))
    named = [seq for _, seq, _ in parsed if seq is not None]
    following = max([last_seq, *named]) + 1
    by_seq: dict[int, dict[str, Any]] = {}
    for where, given, message in parsed:
        seq = following if given is None else given
        if given is None:
            _want(seq <= MAX_INT, where, f"no seq left to append after {seq - 1}")
            following += 1
        message = {"seq": seq, **message}
        if seq in by_seq and by_seq[seq] != message:
            raise InvalidParameter(f"{where}: seq {seq} appears twice with different content")
        by_seq[seq] = message
    return [by_seq[s] for s in sorted(by_seq)]


def check_artefact(raw: str | Any, conversation_slug: str | None) -> dict[str, Any]:
    """A normalised artefact v2; see docs/artefact-v2.md for the format."""
    doc = _object(_load(raw, "artefact"), "artefact")
    _want(bool(doc), "artefact", "empty document")
    _want(doc.get("version") == ARTEFACT_VERSION, "artefact.version",
          f"expected {ARTEFACT_VERSION}, got {doc.get('version')!r}")  # fmt: skip
    slug = doc.get("slug")
    if slug is not None:
        _text(slug, "artefact.slug")
        _want(conversation_slug is None or slug == conversation_slug, "artefact.slug",
              f"{slug!r} does not match conversation {conversation_slug!r}")  # fmt: skip
    level: Any = doc.get("level")
    _want(
        _is_int(level) and 1 <= level <= MAX_INT,
        "artefact.level",
        f"expected an integer from 1 to {MAX_INT}, got {level!r}",
    )
    title = doc.get("title")
    if title is not None:
        _text(title, "artefact.title")
        _want(len(title) <= MAX_TITLE_CHARS, "artefact.title",
              f"{len(title)} characters; the limit is {MAX_TITLE_CHARS}")  # fmt: skip
    date = doc.get("date")
    if date is not None:
        _text(date, "artefact.date")
        try:
            datetime.strptime(date[:10], "%Y-%m-%d")
        except ValueError:
            raise InvalidParameter(f"artefact.date: not a YYYY-MM-DD date: {date!r}") from None
    raw_items = doc.get("summaries")
    _want(isinstance(raw_items, list), "artefact.summaries",
          f"expected an array, got {_type(raw_items)}")  # fmt: skip
    items: list[Any] = raw_items  # type: ignore[assignment]
    seen_index: set[int] = set()
    summaries = []
    for i, item in enumerate(items):
        where = f"summaries[{i}]"
        _want(isinstance(item, dict), where, f"expected an object, got {_type(item)}")
        text = item.get("summary")
        _want(text is not None, f"{where}.summary", "missing: a summary needs its text")
        text = _text(text, f"{where}.summary")
        _want(text.strip() != "", f"{where}.summary", "empty: a summary needs its text")
        index = item.get("index")
        if index is not None:
            _want(_is_int(index) and 0 <= index <= MAX_INT, f"{where}.index",
                  f"expected an integer from 0 to {MAX_INT}, got {index!r}")  # fmt: skip
            _want(index not in seen_index, f"{where}.index", f"index {index} appears twice")
            seen_index.add(index)
        covers = item.get("covers", [])
        _want(
            isinstance(covers, list), f"{where}.covers", f"expected an array, got {_type(covers)}"
        )
        for j, c in enumerate(covers):
            _want(_is_int(c) or isinstance(c, str), f"{where}.covers[{j}]",
                  f"expected an integer or a string, got {_type(c)}")  # fmt: skip
        char_count = item.get("char_count")
        if char_count is not None:
            _want(_is_int(char_count) and 0 <= char_count <= MAX_INT, f"{where}.char_count",
                  f"expected an integer from 0 to {MAX_INT}, got {char_count!r}")  # fmt: skip
        tags = item.get("tags", [])
        _want(isinstance(tags, list), f"{where}.tags", f"expected an array, got {_type(tags)}")
        for j, tag in enumerate(tags):
            _text(tag, f"{where}.tags[{j}]")
        meta = {key: _object(item.get(key), f"{where}.{key}")
                for key in ("entities", "signals", "extras") if key in item}  # fmt: skip
        summaries.append({"index": index, "content": text, "covers": covers,
                          "char_count": char_count if char_count is not None else len(text),
                          "topics": tags, "meta": meta})  # fmt: skip
    return {"level": level, "title": title, "date": date[:10] if date else None,
            "slug": slug, "summaries": summaries}  # fmt: skip


# -- called from SQL (memex._check_messages, memex._check_artefact) ------------------------
MESSAGES_HINT = ("a message is {seq?, role, name?, content, ts?, metadata?}; role is user, "
                 "assistant, system or tool (docs/data-model.md)")  # fmt: skip
ARTEFACT_HINT = "the artefact v2 format is in docs/artefact-v2.md"


def _checked(check: Callable[[], Any], hint: str) -> str:
    """A check's result as JSON, or `{"error", "hint"}` for the calling PL/pgSQL upsert to
    raise: raised there, psql shows the message and its hint; raised here, PL/Python would
    prefix `plpy.Error:` and add its traceback (docs/architecture.md, "Errors")."""
    try:
        return json.dumps(check())
    except InvalidParameter as exc:
        return json.dumps({"error": exc.message, "hint": exc.hint or hint})


def checked_messages(plpy: Any, gd: Any, messages: str, last_seq: int | None) -> str:
    return _checked(lambda: check_messages(messages, last_seq or 0), MESSAGES_HINT)


def checked_artefact(plpy: Any, gd: Any, artefact: str, conversation_slug: str | None) -> str:
    return _checked(lambda: check_artefact(artefact, conversation_slug), ARTEFACT_HINT)
