"""Recognising and mapping ingest formats, without a database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memex.errors import MemexError
from memex.ingest.documents import clean_title
from memex.ingest.html_text import html_to_text
from memex.ingest.items import Artefact, Conversation, FileRejected
from memex.ingest.jsonfiles import read_json_file
from memex.ingest.sources import discover
from tests.cli.mixed_corpus import chatgpt_export


def test_html_keeps_visible_text_in_blocks_and_drops_scripts() -> None:
    page = html_to_text(
        "<html><head><title> A  page </title><script>x()</script></head>"
        "<body><div>one<br>two</div><ul><li>three</li><li>four &lt;5&gt;</li></ul></body></html>"
    )
    assert page.title == "A page" and page.redirect is None
    assert page.text.splitlines() == ["one", "two", "", "three", "", "four <5>"]


def test_html_without_a_closing_head_keeps_its_body() -> None:
    page = html_to_text("<html><head><title>T</title><body><p>Hello")
    assert (page.text, page.title) == ("Hello", "T")


def test_html_main_content_without_chrome_and_code_verbatim() -> None:
    page = html_to_text(
        "<html><head><title>Lifetimes - The Book</title></head><body>"
        "<nav><a href='a.html'>1. Intro</a></nav>"
        "<div id='help'><h2>Keyboard shortcuts</h2></div>"
        "<main><h1>Lifetimes</h1><p>Every   reference\nhas a lifetime.</p>"
        "<pre><code>fn main() {\n    let x = 5;\n}</code></pre>"
        "<nav class='nav-wrapper'><a href='b.html'>Next</a></nav></main>"
        "<footer>© the authors</footer></body></html>"
    )
    assert page.title == "Lifetimes", "the site's suffix goes"
    assert page.text == (
        "Lifetimes\n\nEvery reference has a lifetime.\n\nfn main() {\n    let x = 5;\n}"
    )


def test_html_body_without_main_drops_the_page_chrome() -> None:
    page = html_to_text(
        "<body><header>Site</header><nav>menu</nav><h1>Title</h1><p>text</p>"
        "<aside>related</aside><footer>foot</footer></body>"
    )
    assert page.text == "Title\n\ntext" and page.title == "Title"


def test_a_meta_refresh_page_is_a_redirect() -> None:
    page = html_to_text(
        '<html><head><meta http-equiv="Refresh" content="0; URL=ch04-00.html"></head>'
        "<body><p>Redirecting to <a href='ch04-00.html'>ch04-00.html</a>...</p></body></html>"
    )
    assert page.redirect == "ch04-00.html"


def test_chatgpt_export_follows_the_current_branch(tmp_path: Path) -> None:
    path = tmp_path / "conversations.json"
    path.write_text(json.dumps(chatgpt_export()))
    keys, tokyo = read_json_file(path)
    assert isinstance(keys, Conversation) and isinstance(tokyo, Conversation)
    assert keys.slug == "chatgpt-c-keys" and keys.title == "Key rotation"
    assert [m["content"][:6] for m in keys.messages] == ["How do", "New ke"]
    assert [m["seq"] for m in keys.messages] == [1, 2]
    assert keys.messages[0]["ts"].startswith("2025-06-15T")
    assert tokyo.slug == "chatgpt-c-tokyo" and tokyo.created_date == "2025-06-16"
    # the human is not named by an export; the assistant is the app's
    assert [m.get("name") for m in keys.messages] == [None, "ChatGPT"]


def test_claude_export_maps_senders_to_roles(tmp_path: Path) -> None:
    path = tmp_path / "conversations.json"
    path.write_text(json.dumps([{
        "uuid": "u1", "name": "Keys", "created_at": "2025-01-02T03:04:05Z",
        "chat_messages": [
            {"uuid": "a", "sender": "human", "text": "hello", "created_at": "2025-01-02T03:04:05Z"},
            {"uuid": "b", "sender": "assistant", "text": "",
             "content": [{"type": "text", "text": "hi there"}]},
        ],
    }]))  # fmt: skip
    (conv,) = read_json_file(path)
    assert isinstance(conv, Conversation)
    assert conv.slug == "claude-u1" and conv.created_date == "2025-01-02"
    assert [(m["role"], m["content"]) for m in conv.messages] == [
        ("user", "hello"), ("assistant", "hi there"),
    ]  # fmt: skip
    assert [m.get("name") for m in conv.messages] == [None, "Claude"]


def test_the_chat_format_names_speakers_and_maps_their_roles(tmp_path: Path) -> None:
    path = tmp_path / "chat.json"
    path.write_text(json.dumps({
        "format": "memex.chat/1", "slug": "s1", "title": "Session 1", "date": "2023-05-08",
        "messages": [
            {"speaker": "Caroline", "time": "2023-05-08T13:56:00Z", "text": "I went to the group."},
            {"speaker": "Melanie", "time": 1683554220, "text": "How was it?"},
            {"speaker": "Caroline", "text": "Powerful.", "metadata": {"mood": "glad"}},
        ],
    }))  # fmt: skip
    (conv,) = read_json_file(path)
    assert (
        isinstance(conv, Conversation) and conv.slug == "s1" and conv.created_date == "2023-05-08"
    )
    assert [(m["name"], m["role"], m.get("ts")) for m in conv.messages] == [
        ("Caroline", "user", "2023-05-08T13:56:00Z"),
        ("Melanie", "assistant", "2023-05-08T13:57:00+00:00"),
        ("Caroline", "user", None),
    ]  # fmt: skip
    assert conv.messages[2]["metadata"] == {"mood": "glad"}
    path.write_text(json.dumps([{
        "format": "memex.chat/1", "slug": "s2", "roles": {"Ann": "assistant", "Bo": "user"},
        "messages": [{"speaker": "Ann", "text": "hi"}, {"speaker": "Bo", "text": "hello"}],
    }]))  # fmt: skip
    (conv,) = read_json_file(path)
    assert isinstance(conv, Conversation)
    assert [(m["name"], m["role"]) for m in conv.messages] == [("Ann", "assistant"), ("Bo", "user")]


@pytest.mark.parametrize(
    "chat, error",
    [
        ({"slug": "s", "messages": [], "speakers": []}, r"chat: unknown keys \['speakers'\]"),
        ({"slug": "s", "messages": [{"text": "x"}]}, r"chat.messages\[0\].speaker: missing"),
        ({"slug": "s", "messages": [{"speaker": "A", "txt": "x"}]}, r"unknown keys \['txt'\]"),
        ({"slug": "s", "roles": {"A": "robot"}, "messages": []}, r"chat.roles: expected an object"),
        ({"slug": "s", "roles": {"A": ["user"]}, "messages": []}, r"chat.roles: expected"),
        ({"slug": "s", "messages": [{"speaker": "A"}]}, r"messages\[0\].text: expected a string"),
        ({"slug": "s", "messages": [{"speaker": "A", "text": "x", "time": [1]}]},
         r"chat.messages\[0\].time: expected an ISO 8601 string or Unix seconds"),
        ({"messages": []}, r"chat.slug: missing or empty"),
    ],
)  # fmt: skip
def test_a_malformed_chat_is_refused_naming_the_field(
    tmp_path: Path, chat: dict[str, object], error: str
) -> None:
    path = tmp_path / "chat.json"
    path.write_text(json.dumps({"format": "memex.chat/1", **chat}))
    with pytest.raises(FileRejected, match=error):
        read_json_file(path)


def test_artefact_level_comes_from_the_document_then_the_file_name(tmp_path: Path) -> None:
    named = tmp_path / "talk.l3.v2.json"
    named.write_text(json.dumps({"version": 2, "summaries": []}))
    (art,) = read_json_file(named)
    assert isinstance(art, Artefact) and art.slug == "talk" and art.payload["level"] == 3

    named.write_text(json.dumps({"version": 2, "level": 2, "slug": "other", "summaries": []}))
    (art,) = read_json_file(named)
    assert isinstance(art, Artefact) and art.slug == "other" and art.payload["level"] == 2


def test_an_artefact_without_a_slug_anywhere_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"version": 2, "level": 1, "summaries": []}))
    with pytest.raises(FileRejected, match=r"artefact\.slug"):
        read_json_file(path)


def test_discover_names_files_by_their_tree_and_skips_hidden_ones(tmp_path: Path) -> None:
    (tmp_path / "kb" / "sub").mkdir(parents=True)
    (tmp_path / "kb" / ".cache").mkdir()
    (tmp_path / "kb" / "sub" / "a.md").write_text("a")
    (tmp_path / "kb" / ".cache" / "b.md").write_text("b")
    (tmp_path / "kb" / ".hidden.md").write_text("c")
    (tmp_path / "single.txt").write_text("d")

    found = discover([str(tmp_path / "kb"), str(tmp_path / "single.txt"), str(tmp_path / "kb")])
    assert [(s.uri, s.folder, s.explicit) for s in found] == [
        ("kb/sub/a.md", "kb/sub", False), ("single.txt", None, True),
    ]  # fmt: skip


def test_discover_names_files_from_the_root_and_honours_excludes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "site" / "img").mkdir(parents=True)
    for name in ("a.html", "print.html", "img/logo.pdf", "img/keep.pdf"):
        (tmp_path / "site" / name).write_text("x")
    (tmp_path / "site" / ".memexignore").write_text("*.pdf\n!keep.pdf\n")
    monkeypatch.chdir(tmp_path)

    found = discover(["site"], excludes=["print.html"])
    assert [(s.uri, s.folder) for s in found] == [("site/a.html", "site"),
                                                  ("site/img/keep.pdf", "site/img")]  # fmt: skip
    alone = discover(["./site/img/../a.html"], uri_prefix="kb:")
    assert [(s.uri, s.folder, s.explicit) for s in alone] == [("kb:site/a.html", "kb:site", True)]
    assert discover(["site/print.html"], excludes=["print.html"]) == []


def test_links_out_of_the_tree_are_not_read_unless_asked(tmp_path: Path) -> None:
    (tmp_path / "tree").mkdir()
    (tmp_path / "secret.md").write_text("outside")
    (tmp_path / "tree" / "a.md").write_text("a")
    (tmp_path / "tree" / "notes.md").symlink_to(tmp_path / "secret.md")
    (tmp_path / "tree" / "also-a.md").symlink_to(tmp_path / "tree" / "a.md")
    found = {s.uri: s.link_out for s in discover([str(tmp_path / "tree")], root=str(tmp_path))}
    assert found["tree/notes.md"] == tmp_path / "secret.md", "named, to be reported skipped"
    assert found["tree/a.md"] is None
    assert "tree/also-a.md" not in found, "a link inside the tree is the file it points to"
    followed = discover([str(tmp_path / "tree")], root=str(tmp_path), follow_links=True)
    assert all(s.link_out is None for s in followed)


def test_ignore_patterns_are_bounded(tmp_path: Path) -> None:
    """`*a*a*a*a*a*a*b` against a 200-character name backtracked for over a minute."""
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / ("a" * 200 + ".md")).write_text("x")
    (tmp_path / "kb" / ".memexignore").write_text("*a*a*a*a*a*a*b\n")
    with pytest.raises(MemexError, match=r"too complex .* 7 '\*'"):
        discover([str(tmp_path / "kb")])
    (tmp_path / "kb" / ".memexignore").write_text("\n".join(f"p{i}" for i in range(201)))
    with pytest.raises(MemexError, match="201 patterns; at most 200"):
        discover([str(tmp_path / "kb")])
    (tmp_path / "kb" / ".memexignore").write_text("# fine\n**/*.tmp\n*.min.*.js\n")
    assert len(discover([str(tmp_path / "kb")])) == 1


def test_titles_and_uris_are_one_clean_line(tmp_path: Path) -> None:
    page = html_to_text("<title>Line one\nline\ttwo\x07 " + "x" * 500 + "</title><p>body</p>")
    assert page.title is not None and "\n" not in page.title
    assert clean_title(page.title) == ("Line one line two " + "x" * 500)[:299] + "…"
    weird = tmp_path / "bad\nname.md"
    weird.write_text("x")
    (source,) = discover([str(weird)], root=str(tmp_path))
    assert source.uri == "bad%0Aname.md"


def test_main_content_detection_reads_each_element_once() -> None:
    """20,000 nested empty <article>s: each candidate's text was read again (quadratic)."""
    nested = "<article>" * 2000 + "</article>" * 2000
    page = html_to_text(f"<html><body>{nested}<article><p>the text</p></article></body></html>")
    assert page.text == "the text"
    page = html_to_text(f"<html><body>{nested}<p>body text</p></body></html>")
    assert page.text == "body text"
