"""Conversation memory (docs/search.md, "Conversations"): speakers' names, the conversation
signals of rag_search, recency, the after / before filters, and compose_context's session
blocks. Text mode throughout: the signals rank the same whatever leg scored a message, and no
model call is needed."""

from __future__ import annotations

import json
import re

import psycopg
import pytest

from tests.db.helpers import Conn, as_role, counts, make_tenants

SESSION_1 = [
    {"role": "user", "name": "Caroline", "ts": "2023-05-08T13:56:00Z",
     "content": "I went to the support group yesterday, it was powerful."},
    {"role": "assistant", "name": "Melanie", "ts": "2023-05-08T13:57:00Z",
     "content": "That is great! What happened there?"},
    {"role": "user", "name": "Caroline", "ts": "2023-05-08T13:58:00Z",
     "content": "The stories inspired me to study counseling."},
    {"role": "assistant", "name": "Melanie", "ts": "2023-05-08T13:59:00Z",
     "content": "I adopted a puppy last week."},
]  # fmt: skip
SESSION_2 = [
    {"role": "user", "name": "Caroline", "ts": "2023-06-01T10:00:00Z",
     "content": "I adopted a puppy too, from the shelter."},
    {"role": "assistant", "name": "Melanie", "ts": "2023-06-01T10:01:00Z",
     "content": "Painting by the lake keeps me calm."},
]  # fmt: skip


@pytest.fixture
def app(conn: Conn) -> Conn:
    make_tenants(conn, "acme")
    as_role(conn, "memex_app")
    conn.execute("select memex.set_tenant('acme', false)")
    for slug, date, messages in (("s1", "2023-05-08", SESSION_1), ("s2", "2023-06-01", SESSION_2)):
        conn.execute("select memex.upsert_conversation(%s, 'Session ' || %s, %s::date)",
                     (slug, slug[1], date))  # fmt: skip
        conn.execute("select memex.upsert_messages(%s, %s)", (slug, json.dumps(messages)))
    return conn


def search(app: Conn, query: str, **options: object) -> list[tuple[str, int, str, float]]:
    args = "".join(f", {k} => %({k})s" for k in options)
    rows = app.execute(
        "select metadata ->> 'conversation', (metadata ->> 'seq')::integer, metadata ->> 'name',"
        f" score from memex.rag_search(%(q)s, k => 10, mode => 'text'{args})",
        {"q": query, **options},
    ).fetchall()
    return [(str(r[0]), int(r[1]), str(r[2]), float(r[3])) for r in rows]  # type: ignore[arg-type]


def test_a_message_keeps_its_speakers_name(app: Conn) -> None:
    rows = app.execute("select name from memex.messages order by ts").fetchall()
    assert [r[0] for r in rows] == ["Caroline", "Melanie"] * 3
    hit = search(app, "shelter")[0]
    assert hit[:3] == ("s2", 1, "Caroline")


@pytest.mark.parametrize(
    "message, field, text",
    [
        (
            {"role": "user", "content": "x", "name": "n" * 201},
            "name",
            "201 characters; the limit is 200",
        ),
        ({"role": "user", "content": "x", "name": " "}, "name", "empty name"),
        ({"role": "user", "content": "x", "name": 7}, "name", "expected a string"),
        ({"role": "user", "content": "x", "ts": "last Tuesday"}, "ts", "not an ISO 8601 timestamp"),
    ],
)
def test_a_bad_name_or_time_is_named_and_writes_nothing(
    app: Conn, message: dict[str, object], field: str, text: str
) -> None:
    before = counts(app)
    with pytest.raises(
        psycopg.errors.InvalidParameterValue, match=rf"messages\[1\]\.{field}: .*{text}"
    ):
        app.execute("select memex.upsert_messages('s1', %s)",
                    (json.dumps([{"role": "user", "content": "fine"}, message]),))  # fmt: skip
    assert counts(app) == before


def test_a_query_naming_a_speaker_lifts_their_turns(app: Conn) -> None:
    # both turns say "I adopted a puppy": the query names Caroline
    lifted = [h[:3] for h in search(app, "did Caroline adopt a puppy")][:2]
    assert lifted == [("s2", 1, "Caroline"), ("s1", 4, "Melanie")]
    lifted = [h[:3] for h in search(app, "did Melanie adopt a puppy")][:2]
    assert lifted == [("s1", 4, "Melanie"), ("s2", 1, "Caroline")]


@pytest.mark.parametrize(
    "query, searched",
    [
        ("What activities does Melanie partake in?", "What activities does partake in?"),
        ("caroline's puppy and MELANIE", "puppy and"),
        ("Melanie?", "Melanie?"),  # nothing but a name: searched as it is
        ("the melanies were here", "the melanies were here"),  # whole words only
        ("did Zed adopt a puppy", "did Zed adopt a puppy"),  # not a speaker of this tenant
    ],
)
def test_the_words_searched_leave_out_the_speakers_named(
    app: Conn, query: str, searched: str
) -> None:
    got = app.execute("select memex._content_query(memex.current_tenant(), %s)", (query,))
    assert got.fetchone() == (searched,)


def test_a_speakers_name_is_not_a_word_to_match(app: Conn) -> None:
    """The other speaker's turn that says the name three times and the topic once was first:
    the name matched as a word. It is who spoke that the query names."""
    app.execute("select memex.upsert_conversation('s3', 'Session 3')")
    app.execute(
        "select memex.upsert_messages('s3', %s)",
        (json.dumps([
            {"role": "user", "name": "Caroline",
             "content": "Melanie, Melanie! Tell me about the kayak, Melanie."},
            {"role": "assistant", "name": "Melanie", "content": "The kayak trip was in May."},
        ]),),
    )  # fmt: skip
    assert [h[:3] for h in search(app, "Melanie kayak")][:1] == [("s3", 2, "Melanie")]
    # names stay words for a search without the conversation signals
    assert [h[:3] for h in search(app, "Melanie kayak", conversation_weight=0.0)][:1] == [
        ("s3", 1, "Caroline")
    ]
    # a speaker whose name has regular-expression characters in it
    app.execute(
        "select memex.upsert_messages('s3', %s)",
        (json.dumps([{"role": "user", "name": "J.R. (Bob)", "content": "kayak rental"}]),),
    )
    got = app.execute("select memex._content_query(memex.current_tenant(), 'did j.r. (bob) rent')")
    assert got.fetchone() == ("did rent",)


def test_conversation_weight_zero_ranks_messages_alone(app: Conn) -> None:
    alone = search(app, "adopted puppy stories", conversation_weight=0.0)
    signalled = search(app, "adopted puppy stories")
    assert {h[:2] for h in alone} == {h[:2] for h in signalled}
    # alone, each score is the message's own BM25; a neighbour of the stories turn moves up
    scores = dict(((h[0], h[1]), h[3]) for h in alone)
    assert scores[("s1", 3)] > 0 and scores[("s1", 4)] > 0


def test_documents_keep_their_places_among_messages(app: Conn) -> None:
    app.execute(
        "select memex.upsert_document('kb/puppy.md', 'How to adopt a puppy from a shelter')"
    )

    def places(weight: float) -> list[int]:
        rows = app.execute(
            "select source_kind from memex.rag_search('adopt a puppy shelter', k => 10,"
            " mode => 'text', conversation_weight => %s)", (weight,)).fetchall()  # fmt: skip
        return [i for i, r in enumerate(rows) if r[0] == "document"]

    assert places(1.0) == places(0.0)


@pytest.mark.parametrize(
    "option, value, text",
    [
        ("recency", "0 days", "recency \\(a half-life\\) must be more than 0"),
        ("recency", "-1 day", "recency \\(a half-life\\) must be more than 0"),
        ("recency", "101 years", "at most 100 years"),
        ("conversation_weight", -1, "conversation_weight must be between 0 and 10"),
        ("conversation_weight", 11, "conversation_weight must be between 0 and 10"),
    ],
)
def test_out_of_range_recency_and_weight_are_refused(
    app: Conn, option: str, value: object, text: str
) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=text):
        app.execute(f"select * from memex.rag_search('puppy', {option} => %s)", (value,))


def test_recency_prefers_the_newer_of_two_equal_memories(app: Conn) -> None:
    # the two puppy turns score alike; the newer session's comes first with a 30-day half-life
    plain = search(app, "adopted a puppy", conversation_weight=0.0)
    recent = search(app, "adopted a puppy", conversation_weight=0.0, recency="30 days")
    assert recent[0][:2] == ("s2", 1)
    assert recent[0][3] < plain[0][3], "decayed: the memories are years old"


def test_after_and_before_filter_on_the_messages_time(app: Conn) -> None:
    turns = search(app, "puppy", filters=json.dumps({"after": "2023-05-08T13:59:00Z"}))
    assert {h[:2] for h in turns} == {("s1", 4), ("s2", 1)}, "after is inclusive"
    turns = search(app, "puppy", filters=json.dumps({"before": "2023-05-08T13:59:00Z"}))
    assert turns == []
    turns = search(
        app, "puppy", filters=json.dumps({"after": "2023-05-09", "before": "2024-01-01"})
    )
    assert [h[:2] for h in turns] == [("s2", 1)]
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="after / before must be ISO"):
        search(app, "puppy", filters=json.dumps({"after": "soon"}))
    # a message without a time has its conversation's date (2023-06-01)
    untimed = [{"role": "user", "content": "The puppy sleeps all day."}]
    app.execute("select memex.upsert_messages('s2', %s)", (json.dumps(untimed),))
    turns = search(app, "puppy", filters=json.dumps({"after": "2023-06-01"}))
    assert {h[:2] for h in turns} == {("s2", 1), ("s2", 3)}
    turns = search(app, "puppy", filters=json.dumps({"before": "2023-06-01"}))
    assert {h[:2] for h in turns} == {("s1", 4)}, "before is exclusive"
    turns = search(app, "puppy", filters=json.dumps({"created_after": "2023-06-01"}))
    assert {h[:2] for h in turns} == {("s2", 1), ("s2", 3)}, "created_*: the conversation's date"


def context(app: Conn, query: str, budget: int, **options: object) -> str:
    args = "".join(f", {k} => %({k})s" for k in options)
    row = app.execute(f"select memex.compose_context(%(q)s, %(b)s, mode => 'text'{args})",
                      {"q": query, "b": budget, **options}).fetchone()  # fmt: skip
    assert row is not None
    return str(row[0])


def test_a_context_groups_turns_by_session_with_time_and_speaker(app: Conn) -> None:
    text = context(app, "adopted a puppy", 400, k=10)
    # a session's header has its first turn's time, which that turn then does not repeat
    assert text.startswith("[1] conversation: Session 1, s1, 2023-05-08 13:56\n")
    assert "\n#4 13:59 Melanie: I adopted a puppy last week." in text
    assert (
        "\n\n[2] conversation: Session 2, s2, 2023-06-01 10:00\n#1 Caroline: I adopted a puppy too"
        in text
    )
    turns = re.findall(r"^#\d+ ", text, re.M)
    blocks = text.split("\n\n")
    for block in blocks:
        numbers = [int(t) for t in re.findall(r"^#(\d+) ", block, re.M)]
        assert numbers == sorted(set(numbers)), "in order, never twice"
    # the hits (s1 #4, s2 #1) and, budget left, the turns next to them
    assert turns == ["#3 ", "#4 ", "#1 ", "#2 "]


def test_a_context_shows_the_covering_summary_once(app: Conn) -> None:
    artefact = {"version": 2, "level": 1, "summaries": [
        {"index": 0, "summary": "Caroline and Melanie talk about a support group and puppies.",
         "covers": [1, 2, 3, 4, 99]}]}  # fmt: skip
    app.execute("select * from memex.upsert_summaries('s1', %s)", (json.dumps(artefact),))
    messages = json.dumps({"source_kind": ["message"]})
    text = context(app, "support group puppies", 400, k=10, filters=messages)
    header = "[1] conversation: Session 1, s1, 2023-05-08 13:56\nsummary: Caroline and Melanie"
    assert header in text
    # a session without a summary, opened first (its turn is the best hit), does not keep the
    # next one from its summary line
    assert search(app, "shelter puppy", filters=messages)[0][:2] == ("s2", 1)
    text = context(app, "shelter puppy", 400, k=10, filters=messages)
    assert header in text and "\n\n[2] conversation: Session 2, s2" in text
    # a hit itself, the summary is one block and no session repeats it
    text = context(app, "support group puppies", 400, k=10)
    assert text.count("Caroline and Melanie talk about a support group") == 1


def test_turns_come_before_summary_lines_when_the_budget_is_tight(app: Conn) -> None:
    artefact = {"version": 2, "level": 1, "summaries": [
        {"index": 0, "summary": "Caroline and Melanie talk about a support group, counseling "
         "studies and puppies, at length and in detail, one May afternoon.",
         "covers": [1, 2, 3, 4]}]}  # fmt: skip
    app.execute("select * from memex.upsert_summaries('s1', %s)", (json.dumps(artefact),))
    messages = json.dumps({"source_kind": ["message"]})
    roomy = context(app, "support group counseling", 400, k=10, filters=messages)
    assert "\nsummary: Caroline and Melanie" in roomy  # under its header, before the turns
    assert roomy.index("summary:") < roomy.index("#1 ")
    # a budget that holds the turns found but not the summary line too: the turns stay
    turns = [line for line in roomy.splitlines() if line.startswith("#")]
    header = roomy.splitlines()[0]
    budget = app.execute("select memex.count_tokens(%s)", ("\n".join([header, *turns]),))
    tight = context(app, "support group counseling", int(budget.fetchone()[0]), k=10,  # type: ignore[index]
                    filters=messages)  # fmt: skip
    assert "summary:" not in tight
    assert [line for line in tight.splitlines() if line.startswith("#")] == turns
    # every kind searched: a summary found after its session's turns is that session's line,
    # once, and the neighbour turns are still those of the turns (a summary line has none)
    for query in ("support group counseling", "studies puppies afternoon", "May afternoon"):
        text = context(app, query, 400, k=10)
        assert text.count("Caroline and Melanie talk about a support group") == 1, text


def test_the_budget_is_exact(app: Conn) -> None:
    for budget in range(10, 160, 6):
        text = context(app, "puppy support group counseling lake", budget, k=10)
        used = app.execute("select memex.count_tokens(%s)", (text,)).fetchone()
        assert used is not None and used[0] <= budget, (budget, text)


def test_a_summary_that_matches_lifts_the_messages_it_covers(app: Conn) -> None:
    messages = json.dumps({"source_kind": ["message"]})

    def first(**options: object) -> tuple[str, int]:
        return search(app, "adopted a puppy", filters=messages, **options)[0][:2]

    assert first() == ("s2", 1), "on their words alone, session 2's turn ranks first"
    artefact = {"version": 2, "level": 1, "summaries": [
        {"index": 0, "summary": "Melanie adopted a puppy.", "covers": [4, 99]}]}  # fmt: skip
    app.execute("select * from memex.upsert_summaries('s1', %s)", (json.dumps(artefact),))
    assert first() == ("s1", 4), "its summary leads to the turn it covers"
    # off with the other conversation signals; a summary covering a missing seq is no error
    assert first(conversation_weight=0.0) == ("s2", 1)
    kinds = app.execute(
        "select source_kind from memex.rag_search('adopted a puppy', k => 10, mode => 'text')"
    ).fetchall()
    assert {k[0] for k in kinds} == {"message", "summary"}, "a default search returns both"


def test_a_summary_whose_session_none_of_the_best_messages_is_in_lifts_nothing(app: Conn) -> None:
    """The summary lift goes to sessions holding one of the ten best messages: a summary the
    messages do not agree with would flood the first places with its session's turns."""
    turn = "We adopted a puppy, puppy number {}."
    puppies = [{"role": "user", "content": turn.format(i)} for i in range(12)]
    app.execute("select memex.upsert_conversation('s3', 'Session 3', '2023-07-01'::date)")
    app.execute("select memex.upsert_messages('s3', %s)", (json.dumps(puppies),))

    def ranking() -> list[tuple[str, int]]:
        rows = app.execute(
            "select metadata ->> 'conversation', (metadata ->> 'seq')::integer"
            " from memex.rag_search('adopted a puppy', k => 25, mode => 'text', filters => %s)",
            (json.dumps({"source_kind": ["message"]}),),
        ).fetchall()
        return [(str(r[0]), int(r[1])) for r in rows]

    before = ranking()
    assert before.index(("s1", 4)) >= 10, before
    artefact = {"version": 2, "level": 1, "summaries": [
        {"index": 0, "summary": "Melanie adopted a puppy.", "covers": [4]}]}  # fmt: skip
    app.execute("select * from memex.upsert_summaries('s1', %s)", (json.dumps(artefact),))
    assert ranking() == before


def test_the_summary_search_is_by_words_in_every_mode(app: Conn) -> None:
    """In vector mode too: the summary search adds no model call and no NOTICE of its own (a
    vector search of the few summaries would say pending chunks cannot be found)."""
    for slug, text in (("s3", "We adopted a puppy."), ("s4", "We adopted a little puppy.")):
        app.execute("select memex.upsert_conversation(%s, %s, '2023-07-01'::date)", (slug, slug))
        turn = [{"role": "user", "content": text}]
        app.execute("select memex.upsert_messages(%s, %s)", (slug, json.dumps(turn)))
    as_role(app, "memex_admin")  # embedding is an operator's call
    app.execute("call memex.embed_pending()")
    as_role(app, "memex_app")
    messages = json.dumps({"source_kind": ["message"]})

    def first() -> tuple[str, int]:
        row = app.execute(
            "select metadata ->> 'conversation', (metadata ->> 'seq')::integer from"
            " memex.rag_search('we adopted a puppy', k => 3, mode => 'vector', filters => %s)",
            (messages,),
        ).fetchone()
        assert row is not None
        return str(row[0]), int(row[1])

    assert first() != ("s4", 1), "on its vector alone, s4's turn is not the best"
    artefact = {"version": 2, "level": 1, "summaries": [
        {"index": 0, "summary": "They adopted a puppy.", "covers": [1]}]}  # fmt: skip
    app.execute("select * from memex.upsert_summaries('s4', %s)", (json.dumps(artefact),))
    pending = [{"role": "user", "content": "a turn not embedded yet"}]
    app.execute("select memex.upsert_messages('s2', %s)", (json.dumps(pending),))
    said: list[str] = []
    app.add_notice_handler(lambda d: said.append(str(d.message_primary)))
    assert first() == ("s4", 1), "its summary, found by words (not embedded yet), lifts it"
    assert not [s for s in said if "cannot find" in s], said
