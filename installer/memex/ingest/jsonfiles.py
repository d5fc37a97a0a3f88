"""JSON files: memex conversations, chat-app exports (ChatGPT, Claude) and artefact v2 summaries.

Formats are documented in docs/ingest-formats.md. Messages and artefacts are validated whole by
the database (memex._check_messages, memex._check_artefact); this module only recognises the
shape, maps exports onto it and names what it cannot read.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from memex.ingest.documents import clean_title, decode_text
from memex.ingest.items import Artefact, Conversation, FileRejected, Item, reject_nul

ARTEFACT_NAME = re.compile(r"^(?P<slug>.+)\.l(?P<level>[0-9]+)\.v2\.json$", re.IGNORECASE)
CONVERSATION_KEYS = {"format", "slug", "title", "date", "system_prompt", "metadata", "messages"}
CHAT_ROLES = {"user", "assistant", "system", "tool"}
CHAT_FORMAT = "memex.chat/1"
CHAT_KEYS = {"format", "slug", "title", "date", "metadata", "roles", "messages"}
CHAT_MESSAGE_KEYS = {"speaker", "time", "text", "metadata"}
# The speaker's name an export gives the assistant (exports name no human speaker).
ASSISTANT_NAMES = {"chatgpt": "ChatGPT", "claude": "Claude"}
# Claude's senders and the roles they become; any other sender is left out and counted.
CLAUDE_SENDERS = {"human": "user", "assistant": "assistant"}
NO_TEXT = "no text (an image or a file)"
# What an unzipped ChatGPT or Claude export holds beside conversations.json: the account, shared
# links, feedback, projects and a page to view the chats. conversations.json holds the chats.
EXPORT_COMPANIONS = {
    "user.json", "users.json", "shared_conversations.json", "message_feedback.json",
    "model_comparisons.json", "projects.json", "chat.html",
}  # fmt: skip


def load_json(path: Path) -> Any:
    text = decode_text(path.read_bytes())
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        truncated = not text.rstrip().endswith(("}", "]"))
        raise FileRejected(
            f"malformed JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
            + ("; the file looks truncated" if truncated else "")
        ) from None
    reject_nul(value, "JSON value")
    return value


def export_companion(path: Path) -> bool:
    """A file of an unzipped chat export other than its conversations."""
    return path.name.lower() in EXPORT_COMPANIONS and (path.parent / "conversations.json").is_file()


def read_json_file(path: Path) -> list[Item]:
    value = load_json(path)
    named = ARTEFACT_NAME.match(path.name)
    if named or (isinstance(value, dict) and "summaries" in value):
        return [artefact(value, named)]
    if isinstance(value, dict) and value.get("format") == CHAT_FORMAT:
        return [chat_conversation(value, "chat")]
    if isinstance(value, dict) and "messages" in value:
        return [memex_conversation(value, "conversation")]
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        first = value[0]
        if "mapping" in first:
            return [chatgpt_conversation(v, f"[{i}]") for i, v in enumerate(value)]
        if "chat_messages" in first:
            return [claude_conversation(v, f"[{i}]") for i, v in enumerate(value)]
        if first.get("format") == CHAT_FORMAT:
            return [chat_conversation(v, f"[{i}]") for i, v in enumerate(value)]
        if "messages" in first:
            return [memex_conversation(v, f"[{i}]") for i, v in enumerate(value)]
    raise FileRejected(
        "unrecognised JSON: expected a memex conversation (an object with slug and messages), "
        f'a chat ({{"format": "{CHAT_FORMAT}", ...}}), an artefact v2 (<slug>.l<N>.v2.json), '
        "or a ChatGPT/Claude conversations.json export"
    )


def artefact(value: Any, named: re.Match[str] | None) -> Artefact:
    if not isinstance(value, dict):
        raise FileRejected(f"artefact: expected a JSON object, got {type(value).__name__}")
    payload = dict(value)
    if "level" not in payload and named:
        payload["level"] = int(named["level"])  # the file name is the fallback, never an override
    slug = payload.get("slug") or (named["slug"] if named else None)
    if not isinstance(slug, str) or not slug.strip():
        raise FileRejected(
            "artefact.slug: missing, and the file name is not <slug>.l<N>.v2.json to take it from"
        )
    return Artefact(slug=slug, payload=payload)


def _text_or_none(value: Any, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise FileRejected(f"{where}: expected a string, got {type(value).__name__}")


def _iso_date(value: Any, where: str) -> str | None:
    text = _text_or_none(value, where)
    if text is None:
        return None
    try:
        return date.fromisoformat(text[:10]).isoformat()
    except ValueError:
        raise FileRejected(f"{where}: not a YYYY-MM-DD date: {text!r}") from None


def memex_conversation(value: dict[str, Any], where: str) -> Conversation:
    unknown = sorted(set(value) - CONVERSATION_KEYS)
    if unknown:
        raise FileRejected(f"{where}: unknown keys {unknown}; allowed: {sorted(CONVERSATION_KEYS)}")
    slug = value.get("slug")
    if not isinstance(slug, str) or not slug.strip():
        raise FileRejected(f"{where}.slug: missing or empty; a conversation needs its slug")
    messages = value.get("messages")
    if not isinstance(messages, list):
        raise FileRejected(f"{where}.messages: expected an array, got {type(messages).__name__}")
    metadata = value.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise FileRejected(f"{where}.metadata: expected an object")
    return Conversation(
        slug=slug,
        messages=messages,
        title=_text_or_none(value.get("title"), f"{where}.title"),
        created_date=_iso_date(value.get("date"), f"{where}.date"),
        system_prompt=_text_or_none(value.get("system_prompt"), f"{where}.system_prompt"),
        metadata=metadata,
    )


def _epoch(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    return None


def _speaker_name(given: Any, role: str, app: str) -> str | None:
    """A message's speaker in an export: the name it gives (ChatGPT names tools and GPTs:
    "browser", "python"), else the app's own name for its assistant; none for the human."""
    if isinstance(given, str) and given.strip():
        return given.strip()[:200]
    return ASSISTANT_NAMES[app] if role == "assistant" else None


def _chatgpt_text(content: dict[str, Any]) -> str:
    if isinstance(content.get("text"), str):  # code, execution_output, tether_quote...
        return str(content["text"])
    parts = content.get("parts") or []
    return "\n".join(p for p in parts if isinstance(p, str))  # images and files are dicts


def _chatgpt_thread(conv: dict[str, Any]) -> list[dict[str, Any]]:
    """The branch the user last saw: from current_node up through parents, then reversed."""
    mapping = conv.get("mapping")
    if not isinstance(mapping, dict):
        raise FileRejected("mapping: expected an object of message nodes")
    node_id = conv.get("current_node")
    if node_id is None:  # older exports: follow the last child from the root
        leaves = [k for k, n in mapping.items() if isinstance(n, dict) and not n.get("children")]
        node_id = leaves[-1] if leaves else None
    chain: list[dict[str, Any]] = []
    seen: set[str] = set()
    while (
        isinstance(node_id, str) and node_id not in seen and isinstance(mapping.get(node_id), dict)
    ):
        seen.add(node_id)
        chain.append(mapping[node_id])
        node_id = mapping[node_id].get("parent")
    return chain[::-1]


def chatgpt_conversation(conv: dict[str, Any], where: str) -> Conversation:
    ident = conv.get("conversation_id") or conv.get("id")
    if not isinstance(ident, str) or not ident:
        raise FileRejected(f"{where}: a ChatGPT conversation without conversation_id or id")
    try:
        thread = _chatgpt_thread(conv)
    except FileRejected as exc:
        raise FileRejected(f"{where}.{exc}") from None
    messages: list[dict[str, Any]] = []
    left_out: Counter[str] = Counter()
    for node in thread:
        message = node.get("message")
        if not isinstance(message, dict):
            continue  # the thread's root node holds no message
        role = (message.get("author") or {}).get("role")
        meta = message.get("metadata") or {}
        text = _chatgpt_text(message.get("content") or {})
        if meta.get("is_visually_hidden_from_conversation"):
            if text.strip():  # an empty hidden system node is scaffolding, not a message
                left_out["hidden in ChatGPT"] += 1
            continue
        if role not in CHAT_ROLES:
            left_out[f"unknown author role {role!r}"] += 1
            continue
        if not text.strip():
            left_out[NO_TEXT] += 1
            continue
        item: dict[str, Any] = {"seq": len(messages) + 1, "role": role, "content": text,
                                "metadata": {"source_id": message.get("id")}}  # fmt: skip
        name = _speaker_name((message.get("author") or {}).get("name"), role, "chatgpt")
        if name:
            item["name"] = name
        if meta.get("model_slug"):
            item["metadata"]["model"] = meta["model_slug"]
        created = _epoch(message.get("create_time"))
        if created:
            item["ts"] = created.isoformat()
        messages.append(item)
    created = _epoch(conv.get("create_time"))
    return Conversation(
        slug=f"chatgpt-{ident}",
        messages=messages,
        title=clean_title(_text_or_none(conv.get("title"), f"{where}.title")),
        created_date=created.date().isoformat() if created else None,
        metadata={"source": "chatgpt", "conversation_id": ident},
        left_out=left_out,
    )


def _claude_text(message: dict[str, Any]) -> str:
    if isinstance(message.get("text"), str) and message["text"].strip():
        return str(message["text"])
    blocks = message.get("content") or []
    return "\n".join(
        b["text"] for b in blocks if isinstance(b, dict) and isinstance(b.get("text"), str)
    )


def claude_conversation(conv: dict[str, Any], where: str) -> Conversation:
    ident = conv.get("uuid")
    if not isinstance(ident, str) or not ident:
        raise FileRejected(f"{where}: a Claude conversation without uuid")
    raw = conv.get("chat_messages")
    if not isinstance(raw, list):
        raise FileRejected(f"{where}.chat_messages: expected an array")
    messages: list[dict[str, Any]] = []
    left_out: Counter[str] = Counter()
    for i, message in enumerate(raw):
        if not isinstance(message, dict):
            raise FileRejected(f"{where}.chat_messages[{i}]: expected an object")
        sender = message.get("sender")
        if sender not in CLAUDE_SENDERS:
            left_out[f"unknown sender {sender!r}"] += 1
            continue
        text = _claude_text(message)
        if not text.strip():
            left_out[NO_TEXT] += 1
            continue
        item: dict[str, Any] = {
            "seq": len(messages) + 1,
            "role": CLAUDE_SENDERS[sender],
            "content": text,
            "metadata": {"source_id": message.get("uuid")},
        }
        name = _speaker_name(None, CLAUDE_SENDERS[sender], "claude")
        if name:
            item["name"] = name
        if isinstance(message.get("created_at"), str):
            item["ts"] = message["created_at"]
        messages.append(item)
    return Conversation(
        slug=f"claude-{ident}",
        messages=messages,
        title=clean_title(_text_or_none(conv.get("name"), f"{where}.name")),
        created_date=_iso_date(conv.get("created_at"), f"{where}.created_at"),
        metadata={"source": "claude", "conversation_id": ident},
        left_out=left_out,
    )


def _chat_time(value: Any, where: str) -> str | None:
    """A chat message's time: an ISO 8601 string (checked by the database) or Unix seconds."""
    if value is None or isinstance(value, str):
        return value
    if (moment := _epoch(value)) is not None:
        return moment.isoformat()
    raise FileRejected(
        f"{where}: expected an ISO 8601 string or Unix seconds, got {type(value).__name__}"
    )


def chat_conversation(value: dict[str, Any], where: str) -> Conversation:
    """The generic chat format (docs/ingest-formats.md): speakers by name, each a role from
    `roles`, else the first speaker `user` and every other `assistant`."""
    unknown = sorted(set(value) - CHAT_KEYS)
    if unknown:
        raise FileRejected(f"{where}: unknown keys {unknown}; allowed: {sorted(CHAT_KEYS)}")
    slug = value.get("slug")
    if not isinstance(slug, str) or not slug.strip():
        raise FileRejected(f"{where}.slug: missing or empty; a conversation needs its slug")
    roles = value.get("roles") or {}
    if not isinstance(roles, dict) or any(
        not isinstance(r, str) or r not in CHAT_ROLES for r in roles.values()
    ):
        raise FileRejected(f"{where}.roles: expected an object of speaker: role "
                           f"({', '.join(sorted(CHAT_ROLES))})")  # fmt: skip
    raw = value.get("messages")
    if not isinstance(raw, list):
        raise FileRejected(f"{where}.messages: expected an array, got {type(raw).__name__}")
    metadata = value.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise FileRejected(f"{where}.metadata: expected an object")
    messages: list[dict[str, Any]] = []
    first_speaker: str | None = None
    for i, message in enumerate(raw):
        at = f"{where}.messages[{i}]"
        if not isinstance(message, dict):
            raise FileRejected(f"{at}: expected an object")
        extra = sorted(set(message) - CHAT_MESSAGE_KEYS)
        if extra:
            raise FileRejected(f"{at}: unknown keys {extra}; allowed: {sorted(CHAT_MESSAGE_KEYS)}")
        speaker = message.get("speaker")
        if not isinstance(speaker, str) or not speaker.strip():
            raise FileRejected(f"{at}.speaker: missing or empty")
        if not isinstance(message.get("text"), str):
            raise FileRejected(
                f"{at}.text: expected a string, got {type(message.get('text')).__name__}"
            )
        first_speaker = first_speaker or speaker
        role = roles.get(speaker) or ("user" if speaker == first_speaker else "assistant")
        item: dict[str, Any] = {"role": role, "name": speaker, "content": message.get("text")}
        if (ts := _chat_time(message.get("time"), f"{at}.time")) is not None:
            item["ts"] = ts
        if message.get("metadata") is not None:
            item["metadata"] = message["metadata"]
        messages.append(item)
    return Conversation(
        slug=slug,
        messages=messages,
        title=_text_or_none(value.get("title"), f"{where}.title"),
        created_date=_iso_date(value.get("date"), f"{where}.date"),
        metadata=metadata,
    )
