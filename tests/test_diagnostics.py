"""Golden tests for syntax error messages: the exact text a user sees.

Each case pins ``ProgramError.render()``: ``file:line:column``, the message,
the source line, the caret under the offending text and the hint.
"""

from __future__ import annotations

import json
import time

import pytest

from deepleaps.lang import MAX_NESTING, Diagnostic, ProgramError, SourceText, Span, parse
from deepleaps.lang.diagnostics import describe


def rendered(text: str | bytes, filename: str = "train.dl") -> str:
    with pytest.raises(ProgramError) as caught:
        parse(text, filename)
    return caught.value.render()


GOLDEN = [
    pytest.param(
        '$root[s="a\tb"]',
        [
            "train.dl:1:11: error: a string cannot hold a raw control character",
            '    $root[s="a b"]',
            "              ^",
            "  = write it as \\t",
        ],
        id="raw_tab_in_string",
    ),
    pytest.param(
        "$root( $A -> $B",
        [
            "train.dl:1:16: error: unexpected end of input; expected ')' or ','",
            "    $root( $A -> $B",
            "                   ^",
            "  = the '(' at line 1, column 6 is never closed",
        ],
        id="unclosed_paren",
    ),
    pytest.param(
        "$root(\n    $A -> $B\n\n",
        [
            "train.dl:2:13: error: unexpected end of input; expected ')' or ','",
            "        $A -> $B",
            "                ^",
            "  = the '(' at line 1, column 6 is never closed",
        ],
        id="unclosed_paren_multiline",
    ),
    pytest.param(
        "$A[x=1, y=[2, 3]\n",
        [
            "train.dl:1:17: error: unexpected end of input; expected ']' or ','",
            "    $A[x=1, y=[2, 3]",
            "                    ^",
            "  = the '[' at line 1, column 3 is never closed",
        ],
        id="unclosed_bracket",
    ),
    pytest.param(
        "$root( $A ) )",
        [
            "train.dl:1:13: error: unexpected ')': there is no '(' to close",
            "    $root( $A ) )",
            "                ^",
        ],
        id="extra_paren",
    ),
    pytest.param(
        "$a[x=1]]",
        [
            "train.dl:1:8: error: unexpected ']': there is no '[' to close",
            "    $a[x=1]]",
            "           ^",
        ],
        id="extra_bracket",
    ),
    pytest.param(
        "$root( $A[x=1) )",
        [
            "train.dl:1:14: error: unexpected ')'; expected ']' or ','",
            "    $root( $A[x=1) )",
            "                 ^",
            "  = the '[' at line 1, column 10 is still open",
        ],
        id="closer_of_the_wrong_kind",
    ),
    pytest.param(
        "$A ->",
        [
            "train.dl:1:4: error: '->' with nothing after it: expected a node",
            "    $A ->",
            "       ^~",
        ],
        id="arrow_at_end_of_input",
    ),
    pytest.param(
        "$root( $A ->\n",
        [
            "train.dl:1:11: error: '->' with nothing after it: expected a node",
            "    $root( $A ->",
            "              ^~",
            "  = the '(' at line 1, column 6 is never closed",
        ],
        id="arrow_at_end_of_input_in_group",
    ),
    pytest.param(
        "$root( $A -> )",
        [
            "train.dl:1:14: error: '->' must be followed by a node ($NAME, NAME or *Class)",
            "    $root( $A -> )",
            "                 ^",
        ],
        id="arrow_before_paren",
    ),
    pytest.param(
        "$root( $A -> , $B )",
        [
            "train.dl:1:14: error: '->' must be followed by a node ($NAME, NAME or *Class)",
            "    $root( $A -> , $B )",
            "                 ^",
        ],
        id="arrow_before_comma",
    ),
    pytest.param(
        "$a[x=1e]",
        [
            "train.dl:1:6: error: malformed number '1e'",
            "    $a[x=1e]",
            "         ^~",
        ],
        id="exponent_without_digits",
    ),
    pytest.param(
        "$a[x=0x1F]",
        [
            "train.dl:1:6: error: malformed number '0x1F'",
            "    $a[x=0x1F]",
            "         ^~~~",
        ],
        id="hex_number",
    ),
    pytest.param(
        "$a[lr=1.2.3]",
        [
            "train.dl:1:7: error: malformed number '1.2.3'",
            "    $a[lr=1.2.3]",
            "          ^~~~~",
        ],
        id="two_decimal_points",
    ),
    pytest.param(
        "$a[x=1e999]",
        [
            "train.dl:1:6: error: number out of range: 1e999",
            "    $a[x=1e999]",
            "         ^~~~~",
        ],
        id="float_overflow",
    ),
    pytest.param(
        "$a[x=[-1e999]]",
        [
            "train.dl:1:7: error: number out of range: -1e999",
            "    $a[x=[-1e999]]",
            "          ^~~~~~",
        ],
        id="negative_float_overflow",
    ),
    pytest.param(
        '$a[x="a\\qb"]',
        [
            "train.dl:1:8: error: invalid escape '\\q' in string",
            '    $a[x="a\\qb"]',
            "           ^~",
            '  = valid escapes: \\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX',
        ],
        id="bad_escape",
    ),
    pytest.param(
        '$a[x="\\ud800"]',
        [
            "train.dl:1:6: error: string holds an unpaired surrogate escape (\\uD800-\\uDFFF)",
            '    $a[x="\\ud800"]',
            "         ^~~~~~~~",
        ],
        id="lone_high_surrogate",
    ),
    pytest.param(
        '$a[x="ok \\udc00"]',
        [
            "train.dl:1:6: error: string holds an unpaired surrogate escape (\\uD800-\\uDFFF)",
            '    $a[x="ok \\udc00"]',
            "         ^~~~~~~~~~~",
        ],
        id="lone_low_surrogate",
    ),
    pytest.param(
        '$a[x="abc]',
        [
            "train.dl:1:6: error: unterminated string",
            '    $a[x="abc]',
            "         ^",
            "  = close it with '\"' on the same line",
        ],
        id="unterminated_string",
    ),
    pytest.param(
        '$a[x="abc\n"]',
        [
            "train.dl:1:6: error: unterminated string",
            '    $a[x="abc',
            "         ^",
            "  = close it with '\"' on the same line",
        ],
        id="string_broken_by_newline",
    ),
    pytest.param(
        "$a % $b",
        [
            "train.dl:1:4: error: unexpected character '%'; expected '->', '(', '[' or a new line",
            "    $a % $b",
            "       ^",
        ],
        id="stray_percent",
    ),
    pytest.param(
        "$a\t%",
        [
            "train.dl:1:4: error: unexpected character '%'; expected '->', '(', '[' or a new line",
            "    $a %",
            "       ^",
        ],
        id="stray_percent_after_tab",
    ),
    pytest.param(
        "$root( $ )",
        [
            "train.dl:1:8: error: unexpected character '$'; expected a node ($NAME, NAME or *Class)",
            "    $root( $ )",
            "           ^",
            "  = '$' must be followed directly by a name, as in $NAME",
        ],
        id="lone_dollar",
    ),
    pytest.param(
        "$ root",
        [
            "train.dl:1:1: error: unexpected character '$'; expected a node ($NAME, NAME or *Class)",
            "    $ root",
            "    ^",
            "  = '$' must be followed directly by a name, as in $NAME",
        ],
        id="dollar_then_space",
    ),
    pytest.param(
        "$a[x=$]",
        [
            "train.dl:1:6: error: unexpected character '$'; expected a value",
            "    $a[x=$]",
            "         ^",
            "  = '$' must be followed directly by a name, as in $NAME",
        ],
        id="lone_dollar_as_value",
    ),
    pytest.param(
        "$root( * )",
        [
            "train.dl:1:8: error: unexpected character '*'; expected a node ($NAME, NAME or *Class)",
            "    $root( * )",
            "           ^",
            "  = '*' must be followed directly by a class name, as in *Class",
        ],
        id="lone_star",
    ),
    pytest.param(
        "",
        [
            "train.dl:1:1: error: empty program: expected a node such as '$root( … )'",
            "    ",
            "    ^",
        ],
        id="empty_input",
    ),
    pytest.param(
        "  \n\t\n",
        [
            "train.dl:1:1: error: empty program: expected a node such as '$root( … )'",
            "      ",
            "    ^",
        ],
        id="blank_input",
    ),
    pytest.param(
        "# one\n  # two\n",
        [
            "train.dl:1:1: error: empty program: expected a node such as '$root( … )'",
            "    # one",
            "    ^",
        ],
        id="comments_only",
    ),
    pytest.param(
        "$a[x=loss]",
        [
            "train.dl:1:6: error: unexpected name 'loss'; expected a value",
            "    $a[x=loss]",
            "         ^~~~",
            '  = strings are written in double quotes: "loss"',
        ],
        id="bare_word_value",
    ),
    pytest.param(
        "$a[x=[1, two]]",
        [
            "train.dl:1:10: error: unexpected name 'two'; expected a value or ']'",
            "    $a[x=[1, two]]",
            "             ^~~",
            '  = strings are written in double quotes: "two"',
        ],
        id="bare_word_in_list",
    ),
    pytest.param(
        "$a[lr=1, y=2, lr=3]",
        [
            "train.dl:1:15: error: argument 'lr' is given twice",
            "    $a[lr=1, y=2, lr=3]",
            "                  ^~~~",
        ],
        id="duplicate_argument",
    ),
    pytest.param(
        '$a[m={a=1, "a"=2}]',
        [
            "train.dl:1:12: error: key 'a' is given twice",
            '    $a[m={a=1, "a"=2}]',
            "               ^~~~~",
        ],
        id="duplicate_mapping_key",
    ),
    pytest.param(
        "$root( $A )\n-> $B",
        [
            "train.dl:2:1: error: unexpected '->'; expected a node ($NAME, NAME or *Class)",
            "    -> $B",
            "    ^~",
            "  = a statement ends at the end of its line; wrap it in ( ) or end the line with '->'",
        ],
        id="arrow_at_line_start",
    ),
    pytest.param(
        "$a $b",
        [
            "train.dl:1:4: error: unexpected '$b'; expected '->', '(', '[' or a new line",
            "    $a $b",
            "       ^~",
        ],
        id="two_nodes_without_arrow",
    ),
    pytest.param(
        "$a, $b",
        [
            "train.dl:1:3: error: unexpected ','; expected a new line or the end of the program",
            "    $a, $b",
            "      ^",
            "  = ',' separates chains inside a group, as in $G( $A, $B ); a statement is one chain",
        ],
        id="comma_at_top_level",
    ),
    pytest.param(
        "$a()",
        [
            "train.dl:1:4: error: unexpected ')'; expected a node ($NAME, NAME or *Class)",
            "    $a()",
            "       ^",
        ],
        id="empty_children",
    ),
    pytest.param(
        "$a[x=]",
        [
            "train.dl:1:6: error: unexpected ']'; expected a value",
            "    $a[x=]",
            "         ^",
        ],
        id="missing_value",
    ),
    pytest.param(
        "$a[x 1]",
        [
            "train.dl:1:6: error: unexpected number 1; expected '='",
            "    $a[x 1]",
            "         ^",
        ],
        id="missing_equals",
    ),
    pytest.param(
        "$root( *P as )",
        [
            "train.dl:1:14: error: 'as' must be followed by a label, a name as in *Class as NAME",
            "    $root( *P as )",
            "                 ^",
        ],
        id="label_missing",
    ),
    pytest.param(
        "$root( *P[x=1] Q )",
        [
            "train.dl:1:16: error: unexpected name 'Q'; expected ')', '->', ',', '(' or 'as'",
            "    $root( *P[x=1] Q )",
            "                   ^",
        ],
        id="label_without_as",
    ),
]


@pytest.mark.parametrize(("text", "expected"), GOLDEN)
def test_golden_message(text, expected):
    assert rendered(text) == "\n".join(expected)


def test_integer_literal_with_too_many_digits():
    text = "$a[x=" + "7" * 5000 + "]"
    assert rendered(text) == "\n".join(
        [
            "train.dl:1:6: error: integer literal too long: 7777777777777777777… has 5000 digits",
            "    $a[x=" + "7" * 95 + "…",
            "         ^" + "~" * 95,
        ]
    )


# ---- input that is not UTF-8 --------------------------------------------------------


def test_latin1_bytes_on_the_first_line():
    assert rendered(b'$a[x="caf\xe9"]') == "\n".join(
        [
            "train.dl:1:10: error: the file is not valid UTF-8 (byte 0xe9)",
            '    $a[x="caf\ufffd"]',
            "             ^",
        ]
    )


def test_invalid_byte_after_multibyte_characters_on_a_later_line():
    # The column counts characters: 'é' is two bytes but one column.
    assert rendered(b'$a\n$b[x="\xc3\xa9\xff"]') == "\n".join(
        [
            "train.dl:2:8: error: the file is not valid UTF-8 (byte 0xff)",
            '    $b[x="é\ufffd"]',
            "           ^",
        ]
    )


def test_truncated_multibyte_sequence_at_end_of_input():
    assert rendered(b"$a\n$b\xc3") == "\n".join(
        [
            "train.dl:2:3: error: the file is not valid UTF-8 (byte 0xc3)",
            "    $b\ufffd",
            "      ^",
        ]
    )


# ---- long lines and deep nesting ------------------------------------------------------


def test_error_near_the_end_of_a_one_megabyte_line_is_clipped_around_the_caret():
    item = '$A[s="' + "x" * 990 + '"]'
    text = "$root(" + ", ".join([item] * 1000) + " % " + "y" * 200
    assert len(text) > 1_000_000 and "\n" not in text
    column = text.index("%") + 1
    assert rendered(text, "big.dl") == "\n".join(
        [
            f"big.dl:1:{column}: error: unexpected character '%'; expected ')', '->', ',' or '('",
            "    …" + "x" * 47 + '"] % ' + "y" * 48 + "…",
            "    " + " " * 51 + "^",
        ]
    )


def test_error_at_the_very_end_of_a_long_line_is_clipped_on_the_left_only():
    text = "$root(" + "$A, " * 100 + "$B %"
    assert rendered(text) == "\n".join(
        [
            "train.dl:1:410: error: unexpected character '%'; expected ')', '->', ',', '(' or '['",
            "    …" + "$A, " * 24 + "$B %",
            "    " + " " * 100 + "^",
        ]
    )


def test_nesting_ten_thousand_parentheses_deep():
    text = "$a(" * 10_000
    assert rendered(text) == "\n".join(
        [
            f"train.dl:1:{3 * (MAX_NESTING + 1)}: error: nesting deeper than {MAX_NESTING} levels of '(', '[' and '{{'",
            "    …" + ("$a(" * 34)[:100] + "…",
            "    " + " " * 51 + "^",
        ]
    )


def test_nesting_ten_thousand_brackets_deep():
    text = "$a[x=" + "[" * 10_000
    # '[' of the arguments is level 1, so the first list too many opens at column 5 + MAX_NESTING.
    assert rendered(text) == "\n".join(
        [
            f"train.dl:1:{5 + MAX_NESTING}: error: nesting deeper than {MAX_NESTING} levels of '(', '[' and '{{'",
            "    …" + "[" * 100 + "…",
            "    " + " " * 51 + "^",
        ]
    )


def test_nesting_over_several_lines_points_at_the_first_bracket_too_deep():
    text = "$root(\n" + "  $a(" * 10_000
    assert rendered(text).split("\n")[0] == (
        f"train.dl:2:{5 * MAX_NESTING}: error: nesting deeper than {MAX_NESTING} levels of '(', '[' and '{{'"
    )


# ---- several lines, tabs, file names ------------------------------------------------------


def test_error_on_a_later_line_shows_that_line():
    text = "# training\n$root(\n\t$A ->\n\t$B[lr=1e]\n)\n"
    assert rendered(text, "configs/run.dl") == "\n".join(
        [
            "configs/run.dl:4:8: error: malformed number '1e'",
            "     $B[lr=1e]",
            "           ^~",
        ]
    )


def test_default_file_name():
    with pytest.raises(ProgramError) as caught:
        parse("$a %")
    assert caught.value.render().startswith("<program>:1:4: error: unexpected character '%'")


# ---- the JSON form of a diagnostic ------------------------------------------------------------


def test_diagnostic_to_json():
    with pytest.raises(ProgramError) as caught:
        parse("$root(\n  $A -> $B,\n  $C[x=loss]\n)", "train.dl")
    error = caught.value
    assert len(error.diagnostics) == 1
    diagnostic = error.first
    assert diagnostic.span == Span("train.dl", 3, 8, 3, 12)
    assert diagnostic.hint == 'strings are written in double quotes: "loss"'
    assert diagnostic.source_line == "  $C[x=loss]"
    data = diagnostic.to_json()
    assert data == {
        "message": "unexpected name 'loss'; expected a value",
        "severity": "error",
        "file": "train.dl",
        "line": 3,
        "column": 8,
        "text": "\n".join(
            [
                "train.dl:3:8: error: unexpected name 'loss'; expected a value",
                "      $C[x=loss]",
                "           ^~~~",
                '  = strings are written in double quotes: "loss"',
            ]
        ),
    }
    assert json.loads(json.dumps(data)) == data
    assert data["text"] == error.render() == str(error)


def test_diagnostic_without_a_position():
    diagnostic = Diagnostic("something went wrong", hint="try again")
    assert diagnostic.render() == "error: something went wrong\n  = try again"
    assert diagnostic.to_json() == {
        "message": "something went wrong",
        "severity": "error",
        "file": None,
        "line": None,
        "column": None,
        "text": "error: something went wrong\n  = try again",
    }


def test_several_diagnostics_render_one_after_another():
    first = Diagnostic("first", Span("a.dl", 1, 2, 1, 3), "xyz")
    second = Diagnostic("second", Span("a.dl", 2, 1, 2, 1), "", severity="warning")
    error = ProgramError([first, second])
    assert error.first is first
    assert error.render() == "\n".join(
        ["a.dl:1:2: error: first", "    xyz", "     ^", "a.dl:2:1: warning: second", "    ", "    ^"]
    )


def test_caret_width_follows_the_span_and_tabs_show_as_spaces():
    diagnostic = Diagnostic("wide", Span("t.dl", 1, 3, 1, 7), "\tab\tcdef")
    assert diagnostic.render() == "t.dl:1:3: error: wide\n     ab cdef\n      ^~~~"


def test_a_byte_order_mark_is_not_part_of_the_program():
    assert parse(b"\xef\xbb\xbf$root( $A )") == parse("$root( $A )")


def test_described_inside_another_message_a_program_error_has_no_second_severity():
    located = ProgramError([Diagnostic("bad value", Span("a.dl", 1, 2, 1, 3), "xyz", hint="try 1")])
    assert describe(located) == "a.dl:1:2: bad value\n    xyz\n     ^\n  = try 1"
    assert describe(ProgramError([Diagnostic("no such optimizer")])) == "no such optimizer"
    assert describe(ValueError("boom")) == "ValueError: boom"


def test_source_lines_are_found_by_number_whatever_their_endings():
    source = SourceText("<t>", "first\nsecond\r\n\nlast")
    assert [source.line(number) for number in range(1, 6)] == ["first", "second", "", "last", ""]


def test_a_diagnostic_on_every_line_of_a_long_text_takes_time_in_proportion_to_it():
    """Each line is looked up without reading the text from its start: a request with a
    mistake on each of its 100,000 lines is answered in well under a second, not in hours."""
    lines = 100_000
    source = SourceText("<t>", "\n".join(f"line {number}" for number in range(1, lines + 1)))
    start = time.perf_counter()
    found = [source.line(number) for number in range(1, lines + 1)]
    assert time.perf_counter() - start < 5
    assert found[0] == "line 1" and found[-1] == f"line {lines}"
