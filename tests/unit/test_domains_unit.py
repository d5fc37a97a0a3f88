"""memex_db.domains: fenced blocks are cut out as code, mostly-code prose is code."""

from __future__ import annotations

from memex_db.domains import looks_like_code, split_fences

MARKDOWN = """# Rotating keys

Rotate the signing keys every quarter; the old key stays valid for a week.

```python
def rotate(keyring):
    return keyring.rotate(grace_days=7)
```

Then tell the team.

~~~~
unclosed fence runs to the end
"""


def test_fences_are_cut_out_in_order() -> None:
    parts = list(split_fences(MARKDOWN))
    assert [domain for domain, _ in parts] == ["text", "code", "text", "code"]
    assert parts[1][1].startswith("```python") and parts[1][1].endswith("```")
    assert "Then tell the team." in parts[2][1]
    assert parts[3][1].startswith("~~~~") and parts[3][1].endswith("to the end\n")
    assert "".join(part for _, part in parts) == MARKDOWN  # nothing lost, nothing doubled


def test_a_text_without_fences_is_one_text_part() -> None:
    assert list(split_fences("just prose, `inline code` too")) == [
        ("text", "just prose, `inline code` too")
    ]


def test_mostly_code_prose_is_code() -> None:
    snippet = "import os\nfor name in os.listdir('.'):\n    print(name)\nresult = 3;"
    assert looks_like_code(snippet)
    assert not looks_like_code("Rotate the keys every quarter.\nTell the team (by mail).")
    assert not looks_like_code("Summary (draft)\nThe keys rotate quarterly.")
    assert not looks_like_code("")
