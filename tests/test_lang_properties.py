"""Properties of the command-language front end over generated programs:
printing, parsing, layout independence, JSON and spans."""

from __future__ import annotations

import contextlib
import json
import unittest

import attrs
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from strategies import TRICKY_CHARACTERS, nesting, program_texts, programs, values

from deepleaps.lang import (
    MAX_NESTING,
    SCHEMA,
    Argument,
    Chain,
    Float,
    Integer,
    Node,
    NodeKind,
    Program,
    ProgramError,
    Span,
    String,
    Variable,
    dump_program,
    format_program,
    inline,
    load_program,
    parse,
)
from deepleaps.lang.visitor import walk

SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def spans(program: Program) -> list[Span | None]:
    return [node.span for node in walk(program)]


def has_key(data, key: str) -> bool:
    if isinstance(data, dict):
        return key in data or any(has_key(value, key) for value in data.values())
    if isinstance(data, list):
        return any(has_key(item, key) for item in data)
    return False


def offset(text: str, line: int, column: int) -> int:
    """The index in ``text`` of a 1-based line and column."""
    start = 0
    for _ in range(line - 1):
        start = text.index("\n", start) + 1
    return start + column - 1


def source_of(text: str, span: Span) -> str:
    return text[offset(text, span.line, span.column) : offset(text, span.end_line, span.end_column)]


# ---- printing and parsing --------------------------------------------------------


@SETTINGS
@given(programs())
def test_parse_inverts_format(program):
    assert nesting(program) < MAX_NESTING
    text = format_program(program)
    assert text.endswith("\n")
    assert parse(text) == program


@SETTINGS
@given(programs())
def test_format_is_idempotent(program):
    text = format_program(program)
    assert format_program(parse(text)) == text


@SETTINGS
@given(programs())
def test_canonical_text_has_one_line_per_short_statement(program):
    text = format_program(program)
    for line in text.split("\n"):
        assert line == line.rstrip(), "no trailing whitespace"
        assert "\t" not in line
        indent = len(line) - len(line.lstrip(" "))
        assert indent % 4 == 0
    for chain in program.statements:
        if len(inline(chain)) <= 88:
            assert inline(chain) in text.split("\n")


@SETTINGS
@given(program_texts())
def test_any_layout_parses_to_the_same_program(case):
    program, text, comments = case
    parsed = parse(text)
    assert parsed == program
    assert [comment.text for comment in parsed.comments] == comments
    # walk() yields nodes in source order: their start positions never decrease.
    starts = [(node.span.line, node.span.column) for node in walk(parsed)]
    assert starts == sorted(starts)


@SETTINGS
@given(program_texts())
def test_formatting_keeps_comments_and_is_stable(case):
    program, text, comments = case
    first = format_program(parse(text))
    reparsed = parse(first)
    assert reparsed == program
    assert [comment.text for comment in reparsed.comments] == [comment.rstrip() for comment in comments]
    assert format_program(reparsed) == first


@SETTINGS
@given(program_texts())
def test_spans_point_at_their_source(case):
    _, text, _ = case
    parsed = parse(text, "gen.dl")
    for node in walk(parsed):
        span = node.span
        assert span is not None and span.file == "gen.dl"
        assert (span.line, span.column) <= (span.end_line, span.end_column)
        piece = source_of(text, span)
        if isinstance(node, Node):
            assert piece.startswith(node.kind.value + node.name)
            if node.children:
                assert piece.endswith(")")
            elif node.label is not None:
                assert piece.endswith(node.label)
            else:
                assert piece.endswith((node.name, "]"))
            if node.label is not None:
                assert source_of(text, node.label_span) == node.label
            else:
                assert node.label_span is None
        elif isinstance(node, Argument):
            # An argument or a mapping entry: as an entry of its own, it reads back the same.
            assert parse(f"$probe[v={{{piece}}}]").statements[0].nodes[0].arguments[0].value.entries == (node,)
        elif isinstance(node, Chain):
            first, last = node.nodes[0], node.nodes[-1]
            assert (span.line, span.column) == (first.span.line, first.span.column)
            assert (span.end_line, span.end_column) == (last.span.end_line, last.span.end_column)
        elif not isinstance(node, Program):
            # A value's text, read back on its own, is the same value.
            assert parse(f"$probe[v={piece}]").statements[0].nodes[0].arguments[0].value == node


# ---- equality ---------------------------------------------------------------------


@SETTINGS
@given(programs())
def test_equality_and_hash_ignore_spans(program):
    parsed = parse(format_program(program))
    assert all(span is not None for span in spans(parsed))
    assert all(span is None for span in spans(program))
    assert parsed == program
    assert hash(parsed) == hash(program)
    moved = attrs.evolve(parsed, span=Span("elsewhere", 99, 7, 99, 8))
    assert moved == program


@SETTINGS
@given(programs(), programs())
def test_different_programs_print_differently(a, b):
    assert (a == b) == (format_program(a) == format_program(b))


# ---- JSON ---------------------------------------------------------------------------


@SETTINGS
@given(programs())
def test_json_round_trip(program):
    document = dump_program(program)
    assert document["schema"] == SCHEMA
    assert not has_key(document, "span")
    assert load_program(document) == program
    text = json.dumps(document, allow_nan=False, ensure_ascii=False)
    assert load_program(json.loads(text)) == program
    assert json.loads(json.dumps(dump_program(load_program(json.loads(text))))) == json.loads(text)


@SETTINGS
@given(program_texts())
def test_json_round_trip_with_spans(case):
    program, text, _ = case
    parsed = parse(text)
    document = json.loads(json.dumps(dump_program(parsed, spans=True), allow_nan=False))
    assert has_key(document, "span")
    loaded = load_program(document)
    assert loaded == program
    assert spans(loaded) == spans(parsed)
    # Without spans the document is the same as that of the span-less program.
    assert dump_program(parsed) == dump_program(program)


@SETTINGS
@given(values(3))
def test_value_types_survive_json(value):
    program = Program([Chain([Node(NodeKind.CLASS, "C", [Argument("v", value)])])])
    loaded = load_program(json.loads(json.dumps(dump_program(program))))
    got = loaded.statements[0].nodes[0].arguments[0].value
    assert got == value

    assert [type(node) for node in walk(got)] == [type(node) for node in walk(value)]


# ---- robustness -----------------------------------------------------------------------


@SETTINGS
@given(
    program_texts(),
    st.integers(min_value=0),
    st.sampled_from(["delete", "insert", "replace"]),
    st.sampled_from(sorted(set(TRICKY_CHARACTERS + "%&';:@!?{}<>|~`^0123456789.eE+-xq"))),
)
def test_corrupted_text_fails_with_a_positioned_program_error(case, where, how, char):
    _, text, _ = case
    index = where % (len(text) + 1)
    if how == "delete":
        text = text[:index] + text[index + 1 :]
    elif how == "insert":
        text = text[:index] + char + text[index:]
    else:
        text = text[:index] + char + text[index + 1 :]
    try:
        program = parse(text)
    except ProgramError as error:
        diagnostic = error.first
        assert error.__cause__ is None
        span = diagnostic.span
        lines = text.split("\n")
        assert 1 <= span.line <= len(lines)
        assert 1 <= span.column <= len(lines[span.line - 1]) + 1
        rendered = error.render()
        assert rendered.startswith(f"<program>:{span.line}:{span.column}: error: ")
        assert "^" in rendered.split("\n")[2]
    else:
        assert parse(format_program(program)) == program


# ---- examples for the JSON form ------------------------------------------------------


def test_json_document_shape():
    program = parse('*pkg.Print[content="loss", every=100, lr=1e-3, on=true, x=null, v=$latest.id, l=[1]] -> DONE')
    assert dump_program(program) == {
        "schema": "deepleaps.ast/1",
        "program": {
            "statements": [
                {
                    "nodes": [
                        {
                            "kind": "class",
                            "name": "pkg.Print",
                            "arguments": [
                                {"name": "content", "value": {"type": "string", "value": "loss"}},
                                {"name": "every", "value": {"type": "integer", "value": 100}},
                                {"name": "lr", "value": {"type": "float", "value": 0.001}},
                                {"name": "on", "value": {"type": "boolean", "value": True}},
                                {"name": "x", "value": {"type": "null"}},
                                {"name": "v", "value": {"type": "variable", "name": "latest.id"}},
                                {"name": "l", "value": {"type": "list", "items": [{"type": "integer", "value": 1}]}},
                            ],
                        },
                        {"kind": "define", "name": "DONE"},
                    ]
                }
            ]
        },
    }
    with_spans = dump_program(parse("$A"), spans=True)["program"]
    assert with_spans["span"] == {"file": "<program>", "line": 1, "column": 1, "end_line": 1, "end_column": 3}


def test_json_float_written_as_integer_stays_float():
    document = dump_program(Program([Chain([Node(NodeKind.INSTANCE, "A", [Argument("x", Float(2.0))])])]))
    document["program"]["statements"][0]["nodes"][0]["arguments"][0]["value"]["value"] = 2
    value = load_program(document).statements[0].nodes[0].arguments[0].value
    assert value == Float(2.0) and type(value.value) is float


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"schema": "deepleaps.ast/0", "program": {}}, "expected a 'deepleaps.ast/1' document, got 'deepleaps.ast/0'"),
        ([1, 2], "expected a 'deepleaps.ast/1' document, got 'list'"),
        ({"schema": SCHEMA}, "not a valid Program document"),
        ({"schema": SCHEMA, "program": {"statements": []}}, "not a valid Program document"),
        ({"schema": SCHEMA, "program": {"statements": [{"nodes": [{"kind": "bogus", "name": "A"}]}]}}, "not a valid"),
        (
            {
                "schema": SCHEMA,
                "program": {
                    "statements": [
                        {
                            "nodes": [
                                {"kind": "class", "name": "A", "arguments": [{"name": "x", "value": {"type": "?"}}]}
                            ]
                        },
                    ]
                },
            },
            "not a valid",
        ),
    ],
)
def test_load_program_rejects_bad_documents(document, message):
    with pytest.raises(ProgramError) as caught:
        load_program(document)
    assert message in caught.value.render()


def test_json_keeps_exact_values():
    program = Program(
        [
            Chain(
                [
                    Node(
                        NodeKind.DEFINE,
                        "N",
                        [
                            Argument("big", Integer(-(10**40))),
                            Argument("tiny", Float(5e-324)),
                            Argument("neg0", Float(-0.0)),
                            Argument("s", String('"\\\n\x00\u2028😀')),
                            Argument("v", Variable("a.b")),
                        ],
                    )
                ]
            )
        ]
    )
    loaded = load_program(json.loads(json.dumps(dump_program(program))))
    values_ = [argument.value.value for argument in loaded.statements[0].nodes[0].arguments[:4]]
    assert values_[0] == -(10**40) and type(values_[0]) is int
    assert values_[1] == 5e-324
    assert str(values_[2]) == "-0.0"
    assert values_[3] == '"\\\n\x00\u2028😀'
    assert loaded == program


# ---- the generators reach every form ------------------------------------------------------

#: Look at up to 500 examples, without shrinking any.
_SEARCH = settings(
    max_examples=500, database=None, deadline=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck)
)


def _values_of(program):
    return [node for node in walk(program) if not isinstance(node, Program | Chain | Node | Argument)]


PROGRAM_FEATURES = {
    "all-kinds": lambda p: {node.kind for node in walk(p) if isinstance(node, Node)} == set(NodeKind),
    "label": lambda p: any(isinstance(n, Node) and n.label is not None for n in walk(p)),
    "label-with-children": lambda p: any(isinstance(n, Node) and n.label and n.children for n in walk(p)),
    "dotted-class": lambda p: any(isinstance(n, Node) and n.kind is NodeKind.CLASS and "." in n.name for n in walk(p)),
    "statements-and-chains": lambda p: len(p.statements) >= 2 and any(len(c.nodes) >= 2 for c in p.statements),
    "dag-group": lambda p: any(isinstance(n, Node) and len(n.children) >= 2 for n in walk(p)),
    "nesting-5": lambda p: nesting(p) >= 5,
    "nesting-12": lambda p: nesting(p) >= 12,
    "big-int": lambda p: any(isinstance(v, Integer) and abs(v.value) > 2**64 for v in _values_of(p)),
    "negative-int": lambda p: any(isinstance(v, Integer) and v.value < 0 for v in _values_of(p)),
    "exponent-float": lambda p: any(isinstance(v, Float) and "e-" in repr(v.value) for v in _values_of(p)),
    "escaped-string": lambda p: any(isinstance(v, String) and set(v.value) & set('"\\\n\x00') for v in _values_of(p)),
    "dotted-variable": lambda p: any(isinstance(v, Variable) and "." in v.name for v in _values_of(p)),
    "every-value-kind": lambda p: (
        {type(v).__name__ for v in _values_of(p)}
        >= {"Integer", "Float", "String", "Boolean", "Null", "Variable", "List", "Mapping"}
    ),
}

TEXT_FEATURES = {
    "comment": lambda text: "#" in text,
    "crlf": lambda text: "\r\n" in text,
    "tab": lambda text: "\t" in text,
    "trailing-comma": lambda text: any(f",{closer}" in _squeezed(text) for closer in ")]}"),
    "newline-after-arrow": lambda text: "->\n" in _squeezed(text),
    "newline-in-group": lambda text: "(\n" in _squeezed(text),
    "empty-args": lambda text: "[]" in text,
}


def _squeezed(text: str) -> str:
    return text.replace(" ", "").replace("\t", "")


def _reaches(strategy, features: dict) -> set[str]:
    """The features no example of ``strategy`` had, in up to 500 examples."""
    missing = set(features)

    @_SEARCH
    @given(strategy)
    def look(example) -> None:
        missing.difference_update({name for name in missing if features[name](example)})
        if not missing:
            raise _SeenAll

    with contextlib.suppress(_SeenAll):
        look()
    return missing


class _SeenAll(unittest.SkipTest):
    """Stops the search once every feature was seen. Hypothesis ends a test at a skip
    without printing its example; ``find`` prints the one it returns, and
    pretty-printing a large program takes minutes."""


def test_programs_reach_every_form():
    assert _reaches(programs(), PROGRAM_FEATURES) == set()


def test_program_texts_reach_every_layout():
    assert _reaches(program_texts().map(lambda case: case[1]), TEXT_FEATURES) == set()
