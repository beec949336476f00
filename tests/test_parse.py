"""The parser, the visitor and the canonical printer on hand-written programs."""

from __future__ import annotations

import math

import attrs
import lark
import pytest

from deepleaps.lang import (
    MAX_NESTING,
    Argument,
    Boolean,
    Chain,
    Comment,
    Float,
    Integer,
    List,
    Mapping,
    Node,
    NodeKind,
    Null,
    Program,
    ProgramError,
    Span,
    String,
    Variable,
    format_program,
    inline,
    parse,
)
from deepleaps.lang import ast as ast_module
from deepleaps.lang.ast import python_value
from deepleaps.lang.visitor import Visitor, walk

SEED = (
    "$root( $TRAINER_CONTAINER_LOAD->$TRAINING_LOADER("
    " $MAIN_MODEL_LOAD->$TRAINING_BATCH( $TRAINING_STEP )->MAIN_MODEL_SAVE) )"
)


def instance(name: str, *children: Chain, **arguments) -> Node:
    return Node(NodeKind.INSTANCE, name, _arguments(arguments), children)


def define(name: str, *children: Chain, **arguments) -> Node:
    return Node(NodeKind.DEFINE, name, _arguments(arguments), children)


def klass(name: str, *children: Chain, **arguments) -> Node:
    return Node(NodeKind.CLASS, name, _arguments(arguments), children)


def _arguments(arguments: dict) -> list[Argument]:
    return [Argument(name, value) for name, value in arguments.items()]


def chain(*nodes: Node) -> Chain:
    return Chain(nodes)


def program(*statements: Chain) -> Program:
    return Program(statements)


def only_node(text: str) -> Node:
    parsed = parse(text)
    assert len(parsed.statements) == 1 and len(parsed.statements[0].nodes) == 1
    return parsed.statements[0].nodes[0]


def arguments_of(text: str) -> dict:
    return {argument.name: argument.value for argument in only_node(text).arguments}


# ---- the seed program ------------------------------------------------------------------


def test_seed_program_tree():
    expected = program(
        chain(
            instance(
                "root",
                chain(
                    instance("TRAINER_CONTAINER_LOAD"),
                    instance(
                        "TRAINING_LOADER",
                        chain(
                            instance("MAIN_MODEL_LOAD"),
                            instance("TRAINING_BATCH", chain(instance("TRAINING_STEP"))),
                            define("MAIN_MODEL_SAVE"),
                        ),
                    ),
                ),
            )
        )
    )
    assert parse(SEED) == expected


def test_seed_program_kinds_and_names():
    (statement,) = parse(SEED).statements
    (root,) = statement.nodes
    assert (root.kind, root.name, root.arguments) == (NodeKind.INSTANCE, "root", ())
    (inner,) = root.children
    load, loader = inner.nodes
    assert (load.kind, load.name, load.children) == (NodeKind.INSTANCE, "TRAINER_CONTAINER_LOAD", ())
    assert (loader.kind, loader.name) == (NodeKind.INSTANCE, "TRAINING_LOADER")
    (epoch,) = loader.children
    assert [(node.kind, node.name) for node in epoch.nodes] == [
        (NodeKind.INSTANCE, "MAIN_MODEL_LOAD"),
        (NodeKind.INSTANCE, "TRAINING_BATCH"),
        (NodeKind.DEFINE, "MAIN_MODEL_SAVE"),
    ]
    batch = epoch.nodes[1]
    assert [[(n.kind, n.name) for n in c.nodes] for c in batch.children] == [[(NodeKind.INSTANCE, "TRAINING_STEP")]]
    assert epoch.nodes[2].children == () and epoch.nodes[0].children == ()


def test_seed_program_canonical_text():
    text = format_program(parse(SEED))
    assert text == (
        "$root(\n"
        "    $TRAINER_CONTAINER_LOAD -> $TRAINING_LOADER(\n"
        "        $MAIN_MODEL_LOAD -> $TRAINING_BATCH($TRAINING_STEP) -> MAIN_MODEL_SAVE\n"
        "    )\n"
        ")\n"
    )
    assert parse(text) == parse(SEED)


# ---- node forms, groups, statements ----------------------------------------------------------


def test_three_node_kinds_and_dotted_class_names():
    parsed = parse("$inst -> DEF -> *Cls -> *pkg.sub.Cls -> _x1 -> $_")
    assert parsed == program(
        chain(instance("inst"), define("DEF"), klass("Cls"), klass("pkg.sub.Cls"), define("_x1"), instance("_"))
    )


def test_keywords_are_names_where_a_name_is_expected():
    parsed = parse("true -> $null -> *false(null)")
    assert parsed == program(chain(define("true"), instance("null"), klass("false", chain(define("null")))))
    assert set(arguments_of("$a[true=1, null=2]")) == {"true", "null"}


def test_labels_name_fresh_instances():
    parsed = parse('$root( *Print[content="x"] as P -> DEF as as, *Graph[repeat=2] as G( $A ) )')
    print_node, define_node = parsed.statements[0].nodes[0].children[0].nodes
    graph = parsed.statements[0].nodes[0].children[1].nodes[0]
    assert (print_node.kind, print_node.name, print_node.label) == (NodeKind.CLASS, "Print", "P")
    assert (define_node.kind, define_node.name, define_node.label) == (NodeKind.DEFINE, "DEF", "as")
    assert (graph.label, graph.arguments[0].name, graph.children[0].nodes[0].name) == ("G", "repeat", "A")
    assert print_node.label_span == Span("<program>", 1, 31, 1, 32)
    assert parse("*Print as P") != parse("*Print as Q") != parse("*Print")


def test_a_label_on_an_instance_reference_is_refused_at_the_label():
    with pytest.raises(ProgramError) as caught:
        parse("$root( $A[x=1] as B )", "prog.dl")
    assert caught.value.render() == (
        "prog.dl:1:16: error: '$A' names an instance already and cannot take a label\n"
        "    $root( $A[x=1] as B )\n"
        "                   ^~~~\n"
        "  = a label names a fresh instance: 'A as B' or '*Class as B'"
    )
    with pytest.raises(ValueError, match="cannot have a label"):
        Node(NodeKind.INSTANCE, "A", label="B")


def test_dag_groups_with_commas():
    assert parse("$G( $A->$B, $A->$C )") == program(
        chain(instance("G", chain(instance("A"), instance("B")), chain(instance("A"), instance("C"))))
    )
    assert parse("$G($A, $B, $C,)") == program(
        chain(instance("G", chain(instance("A")), chain(instance("B")), chain(instance("C"))))
    )


def test_children_and_arguments_together_and_chain_after_children():
    parsed = parse('*Loop[repeat=3]( $A ) -> $B[x="y"]')
    assert parsed == program(
        chain(klass("Loop", chain(instance("A")), repeat=Integer(3)), instance("B", x=String("y")))
    )


def test_empty_argument_brackets_mean_no_arguments():
    assert parse("$A[]") == parse("$A") == parse("$A[ ]")
    assert parse("$A[]($B)") == program(chain(instance("A", chain(instance("B")))))


def test_several_statements():
    parsed = parse("$A\n$B -> $C\n\n\n*X($Y)\n")
    assert parsed == program(
        chain(instance("A")),
        chain(instance("B"), instance("C")),
        chain(klass("X", chain(instance("Y")))),
    )


# ---- literals ---------------------------------------------------------------------------------


def test_print_command_from_the_design():
    node = only_node('*PrintCommand[content="loss", run_cycle="TRAINING_BATCH.step:100"]')
    assert node == klass("PrintCommand", content=String("loss"), run_cycle=String("TRAINING_BATCH.step:100"))


LITERALS = (
    "*C[i=42, zero=0, neg=-7, big=123456789012345678901234567890, nbig=-99999999999999999999,"
    " f=1e-3, g=-2.5, e=1E+10, tiny=1e-300, half=.5, nhalf=-.5, one=1., e2=2e5,"
    r' s="a\"b\\c\/d\n\t\r\b\f\u00e9\ud83d\ude00", raw="é 😀 #not a comment -> ( [", empty="",'
    " yes=true, no=false, none=null, v=$base, w=$latest.id,"
    ' l=[1, [2.0, "x"], [], null, $v], trailing=[1, 2,],'
    ' m={lr=0.1, "odd key"=[1, {}], "true"=1, false=$x.y, "\\u00e9"="é"}, em={},]'
)


def test_every_literal_kind_as_ast():
    values = arguments_of(LITERALS)
    assert values == {
        "i": Integer(42),
        "zero": Integer(0),
        "neg": Integer(-7),
        "big": Integer(123456789012345678901234567890),
        "nbig": Integer(-99999999999999999999),
        "f": Float(0.001),
        "g": Float(-2.5),
        "e": Float(1e10),
        "tiny": Float(1e-300),
        "half": Float(0.5),
        "nhalf": Float(-0.5),
        "one": Float(1.0),
        "e2": Float(200000.0),
        "s": String('a"b\\c/d\n\t\r\b\fé😀'),
        "raw": String("é 😀 #not a comment -> ( ["),
        "empty": String(""),
        "yes": Boolean(True),
        "no": Boolean(False),
        "none": Null(),
        "v": Variable("base"),
        "w": Variable("latest.id"),
        "l": List([Integer(1), List([Float(2.0), String("x")]), List([]), Null(), Variable("v")]),
        "trailing": List([Integer(1), Integer(2)]),
        "m": Mapping(
            [
                Argument("lr", Float(0.1)),
                Argument("odd key", List([Integer(1), Mapping([])])),
                Argument("true", Integer(1)),
                Argument("false", Variable("x.y")),
                Argument("é", String("é")),
            ]
        ),
        "em": Mapping([]),
    }


def test_every_literal_kind_as_python_values():
    values = {name: python_value(value) for name, value in arguments_of(LITERALS).items()}
    exact = {
        "i": 42,
        "zero": 0,
        "neg": -7,
        "big": 123456789012345678901234567890,
        "nbig": -99999999999999999999,
        "f": 0.001,
        "g": -2.5,
        "e": 1e10,
        "tiny": 1e-300,
        "half": 0.5,
        "nhalf": -0.5,
        "one": 1.0,
        "e2": 200000.0,
        "s": 'a"b\\c/d\n\t\r\b\fé😀',
        "raw": "é 😀 #not a comment -> ( [",
        "empty": "",
        "yes": True,
        "no": False,
        "none": None,
    }
    for name, value in exact.items():
        assert values[name] == value, name
        assert type(values[name]) is type(value), name
    assert values["v"] == Variable("base") and values["w"] == Variable("latest.id")
    assert values["l"] == [1, [2.0, "x"], [], None, Variable("v")]
    assert [type(item) for item in values["l"][1]] == [float, str]
    assert values["trailing"] == [1, 2]
    assert values["m"] == {"lr": 0.1, "odd key": [1, {}], "true": 1, "false": Variable("x.y"), "é": "é"}
    assert values["em"] == {}


def test_integer_and_float_are_different_values():
    values = arguments_of("$a[i=1, f=1.0, b=true]")
    assert values["i"] != values["f"]
    assert values["i"] != values["b"]
    assert type(values["f"].value) is float


def test_extreme_floats():
    values = arguments_of("$a[max=1.7976931348623157e308, min=5e-324, nz=-0.0, under=1e-400]")
    assert values["max"].value == 1.7976931348623157e308
    assert values["min"].value == 5e-324
    assert math.copysign(1.0, values["nz"].value) == -1.0
    assert values["under"].value == 0.0  # underflow rounds to zero; only overflow is an error


# ---- comments and layout -----------------------------------------------------------------------


def test_comments_are_ignored_and_kept():
    text = (
        "# header\n$root(  # open\n    $A -> # after arrow\n    $B, # comma\n"
        "    $C[x=1, # in args\n    ]\n)  # close\n# footer"
    )
    parsed = parse(text)
    assert parsed == program(
        chain(instance("root", chain(instance("A"), instance("B")), chain(instance("C", x=Integer(1)))))
    )
    assert parsed.comments == (
        Comment("# header", 1),
        Comment("# open", 2),
        Comment("# after arrow", 3),
        Comment("# comma", 4),
        Comment("# in args", 5),
        Comment("# close", 7),
        Comment("# footer", 8),
    )


def test_hash_inside_a_string_is_not_a_comment():
    assert arguments_of('$a[s="x # y"]') == {"s": String("x # y")}
    assert parse('$a[s="x # y"]').comments == ()


def test_newline_ends_a_statement_at_top_level():
    assert parse("$A\n$B") == program(chain(instance("A")), chain(instance("B")))
    with pytest.raises(ProgramError, match="unexpected '->'"):
        parse("$A\n-> $B")


def test_newline_is_free_after_arrow_and_inside_brackets():
    one = program(chain(instance("A"), instance("B", chain(instance("C")), chain(instance("D"))), instance("E")))
    assert parse("$A ->\n$B($C, $D) ->\n\n$E") == one
    assert parse("$A -> $B(\n$C\n,\n$D\n) -> $E") == one
    assert parse("$A -> # note\n  $B(\n  # c\n  $C,\n\n  $D\n  ) -> $E") == one
    assert only_node("$A[\nx\n=\n[\n1\n,\n2\n]\n]") == instance("A", x=List([Integer(1), Integer(2)]))


def test_blank_lines_leading_newlines_crlf_and_tabs():
    expected = program(chain(instance("A"), instance("B")), chain(define("C")))
    assert parse("\n\n  \n$A -> $B\n\n\n\tC\n\n") == expected
    assert parse("$A\t->\t$B\r\nC\r\n") == expected
    assert parse("$A ->\r\n $B\r\n\r\nC") == expected


# ---- spans -----------------------------------------------------------------------------------


def test_spans_of_nodes_and_values():
    parsed = parse('$root( $A -> $B )\n  *C[x=1, y=[2, "é"]]  # c\n', "f.dl")
    got = [(type(node).__name__, node.span) for node in walk(parsed)]
    assert got == [
        ("Program", Span("f.dl", 1, 1, 3, 1)),  # through the final newline
        ("Chain", Span("f.dl", 1, 1, 1, 18)),
        ("Node", Span("f.dl", 1, 1, 1, 18)),
        ("Chain", Span("f.dl", 1, 8, 1, 16)),
        ("Node", Span("f.dl", 1, 8, 1, 10)),
        ("Node", Span("f.dl", 1, 14, 1, 16)),
        ("Chain", Span("f.dl", 2, 3, 2, 22)),
        ("Node", Span("f.dl", 2, 3, 2, 22)),
        ("Argument", Span("f.dl", 2, 6, 2, 9)),
        ("Integer", Span("f.dl", 2, 8, 2, 9)),
        ("Argument", Span("f.dl", 2, 11, 2, 21)),
        ("List", Span("f.dl", 2, 13, 2, 21)),
        ("Integer", Span("f.dl", 2, 14, 2, 15)),
        ("String", Span("f.dl", 2, 17, 2, 20)),
    ]
    assert str(parsed.statements[1].nodes[0].span) == "f.dl:2:3"


def test_spans_across_lines_and_default_file_name():
    parsed = parse("$G(\n\t$A,\n    $B)")
    (group,) = parsed.statements[0].nodes
    assert group.span == Span("<program>", 1, 1, 3, 8)
    assert [c.nodes[0].span for c in group.children] == [
        Span("<program>", 2, 2, 2, 4),
        Span("<program>", 3, 5, 3, 7),
    ]


def test_columns_are_one_based_and_count_characters_not_bytes():
    parsed = parse('$a[s="ééé"] -> $b')
    assert parsed.statements[0].nodes[0].span.column == 1
    assert parsed.statements[0].nodes[1].span.column == 16


# ---- nothing from the parser library leaks ------------------------------------------------------


def _check_plain(value, path="program"):
    """Every object reachable from the AST is an AST class or a plain builtin."""
    if isinstance(value, tuple):
        for index, item in enumerate(value):
            _check_plain(item, f"{path}[{index}]")
        return
    if attrs.has(type(value)):
        assert type(value).__module__ == ast_module.__name__, path
        for field in attrs.fields(type(value)):
            _check_plain(getattr(value, field.name), f"{path}.{field.name}")
        return
    assert type(value) in (str, int, float, bool, type(None), NodeKind), (path, type(value))


def test_result_holds_only_ast_objects_and_builtins():
    parsed = parse(LITERALS + " -> $x(*y.Z[a=[[1]]]) # c\n$root")
    _check_plain(parsed)
    assert type(parsed.comments[0].text) is str


BAD_INPUTS = [
    "$root(",
    "$root( $A ) )",
    "$A ->",
    "$a[x=1e]",
    "$a[x=1e999]",
    '$a[x="\\q"]',
    '$a[x="abc',
    "%",
    "",
    "# only",
    "$a[x=loss]",
    "$a[x=1, x=2]",
    "$A\n-> $B",
    "$a(" * 100,
    "$a[x=" + "1" * 5000 + "]",
]


@pytest.mark.parametrize("text", BAD_INPUTS, ids=[f"bad{index}" for index in range(len(BAD_INPUTS))])
def test_errors_are_program_errors_without_parser_internals(text):
    with pytest.raises(ProgramError) as caught:
        parse(text)
    error = caught.value
    assert not isinstance(error, lark.exceptions.LarkError)
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__
    assert error.diagnostics and error.first.span is not None
    for diagnostic in error.diagnostics:
        assert type(diagnostic.message) is str and type(diagnostic.source_line) is str


def test_integer_with_more_digits_than_python_converts_is_a_program_error():
    with pytest.raises(ProgramError, match="integer literal too long: 1111111111111111111… has 5000 digits"):
        parse("$a[x=" + "1" * 5000 + "]")
    assert arguments_of("$a[x=" + "9" * 4000 + "]")["x"].value == int("9" * 4000)


# ---- input forms and sizes --------------------------------------------------------------------


def test_bytes_input_is_utf8():
    assert parse(b"$root( $A -> $B )") == parse("$root( $A -> $B )")
    assert arguments_of('$a[s="é😀"]') == {"s": String("é😀")}
    assert parse('$a[s="é😀"]'.encode()) == parse('$a[s="é😀"]')


def test_one_megabyte_single_line_program():
    item = '$A[s="' + "x" * 990 + '"]'
    text = "$root(" + ", ".join([item] * 1000) + ")"
    assert len(text) > 1_000_000 and "\n" not in text
    (root,) = parse(text).statements[0].nodes
    assert len(root.children) == 1000
    assert root.children[-1].nodes[0].arguments[0].value == String("x" * 990)
    assert root.children[-1].nodes[0].span.column == len(text) - len(item)


def _nested_parens(depth: int) -> str:
    return "$a(" * depth + "$b" + ")" * depth


def _nested_lists(depth: int) -> str:
    # The argument list's '[' is one level; the other depth - 1 are lists.
    return "$a[x=" + "[" * (depth - 1) + "1" + "]" * (depth - 1) + "]"


def _nested_mixed(depth: int) -> str:
    half = depth // 2
    return "$a(" * half + "$b[x=" + "[" * (depth - half - 1) + "]" * (depth - half - 1) + "]" + ")" * half


@pytest.mark.parametrize("make", [_nested_parens, _nested_lists, _nested_mixed])
def test_nesting_limit(make):
    deepest = parse(make(MAX_NESTING))
    assert parse(format_program(deepest)) == deepest
    with pytest.raises(ProgramError, match=f"nesting deeper than {MAX_NESTING} levels"):
        parse(make(MAX_NESTING + 1))


def test_nesting_limit_depth_is_exact():
    node = parse(_nested_parens(MAX_NESTING)).statements[0].nodes[0]
    depth = 0
    while node.children:
        node = node.children[0].nodes[0]
        depth += 1
    assert depth == MAX_NESTING and node.name == "b"
    value = only_node(_nested_lists(MAX_NESTING)).arguments[0].value
    depth = 1
    while isinstance(value, List):
        value = value.items[0]
        depth += 1
    assert depth == MAX_NESTING and value == Integer(1)


@pytest.mark.parametrize(
    "text",
    ["$a(" * 10_000, "$a[x=" + "[" * 10_000, "$a(" * 10_000 + ")" * 10_000, "$a[x=" + "[" * 10_000 + "]" * 10_000],
    ids=["parens", "lists", "closed-parens", "closed-lists"],
)
def test_very_deep_input_is_a_program_error_not_a_recursion_error(text):
    with pytest.raises(ProgramError, match=f"nesting deeper than {MAX_NESTING} levels"):
        parse(text)


def test_deep_brackets_where_no_value_may_stand_are_a_syntax_error():
    with pytest.raises(ProgramError, match="unexpected '\\['; expected a node"):
        parse("[" * 10_000)


# ---- the visitor ----------------------------------------------------------------------------------


class _Counter(Visitor[int]):
    """Counts AST nodes by dispatching on every class."""

    def visit_program(self, program):
        return 1 + sum(self.visit(c) for c in program.statements)

    def visit_chain(self, chain):
        return 1 + sum(self.visit(n) for n in chain.nodes)

    def visit_node(self, node):
        return 1 + sum(self.visit(a) for a in node.arguments) + sum(self.visit(c) for c in node.children)

    def visit_argument(self, argument):
        return 1 + self.visit(argument.value)

    def visit_integer(self, value):
        return 1

    def visit_float(self, value):
        return 1

    def visit_string(self, value):
        return 1

    def visit_boolean(self, value):
        return 1

    def visit_null(self, value):
        return 1

    def visit_variable(self, value):
        return 1

    def visit_list(self, value):
        return 1 + sum(self.visit(item) for item in value.items)

    def visit_mapping(self, value):
        return 1 + sum(self.visit(entry) for entry in value.entries)


def test_visitor_missing_a_method_cannot_be_instantiated():
    class Partial(Visitor[int]):
        def visit_program(self, program):
            return 0

    with pytest.raises(TypeError, match="abstract"):
        Partial()

    assert {"visit_program", "visit_node", "visit_list", "visit_variable"} <= Visitor.__abstractmethods__
    for missing in sorted(Visitor.__abstractmethods__):
        methods = {name: method for name, method in vars(_Counter).items() if name.startswith("visit_")}
        del methods[missing]
        incomplete = type("Incomplete", (Visitor,), methods)
        with pytest.raises(TypeError, match=missing):
            incomplete()
    assert isinstance(_Counter(), Visitor)  # a complete visitor instantiates


def test_visitor_dispatches_every_class():
    parsed = parse(LITERALS)
    assert _Counter().visit(parsed) == sum(1 for _ in walk(parsed))


def test_walk_yields_nodes_in_source_order():
    parsed = parse(SEED)
    names = [node.name for node in walk(parsed) if isinstance(node, Node)]
    assert names == [
        "root",
        "TRAINER_CONTAINER_LOAD",
        "TRAINING_LOADER",
        "MAIN_MODEL_LOAD",
        "TRAINING_BATCH",
        "TRAINING_STEP",
        "MAIN_MODEL_SAVE",
    ]
    parsed = parse('$A[x=1, y=[2, "s"]]($B, $C) -> $D\n$E')
    kinds = [type(node).__name__ + ":" + inline(node) for node in walk(parsed)]
    assert kinds == [
        'Program:$A[x=1, y=[2, "s"]]($B, $C) -> $D\n$E',
        'Chain:$A[x=1, y=[2, "s"]]($B, $C) -> $D',
        'Node:$A[x=1, y=[2, "s"]]($B, $C)',
        "Argument:x=1",
        "Integer:1",
        'Argument:y=[2, "s"]',
        'List:[2, "s"]',
        "Integer:2",
        'String:"s"',
        "Chain:$B",
        "Node:$B",
        "Chain:$C",
        "Node:$C",
        "Node:$D",
        "Chain:$E",
        "Node:$E",
    ]
    starts = [(node.span.line, node.span.column) for node in walk(parsed)]
    assert starts == sorted(starts)


def test_walk_handles_the_deepest_program_without_recursion():
    parsed = parse(_nested_parens(MAX_NESTING))
    assert sum(isinstance(node, Node) for node in walk(parsed)) == MAX_NESTING + 1


# ---- the canonical printer --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "canonical"),
    [
        ("$root( $A->$B )", "$root($A -> $B)\n"),
        ("$G( $A->$B, $A->$C, )", "$G($A -> $B, $A -> $C)\n"),
        ("  *pkg.C [ x = 1e-3 , y=[ 1,2, ] ]", "*pkg.C[x=0.001, y=[1, 2]]\n"),
        ("$A[]", "$A\n"),
        ("$A[x=1.]", "$A[x=1.0]\n"),
        ("$A[x=1E5]", "$A[x=100000.0]\n"),
        ("$A[x=1e300]", "$A[x=1e+300]\n"),
        ('$A[s="\\u00e9\\/\\u0001"]', '$A[s="é/\\u0001"]\n'),
        ("$A[v=$latest.id, n=null, t=true, f=false]", "$A[v=$latest.id, n=null, t=true, f=false]\n"),
        ("$A\n\n\n$B ->\n $C", "$A\n$B -> $C\n"),
        ('$A[m={ "a b" = 1, "c"=2, "null"=3, d={},}]', '$A[m={"a b"=1, c=2, "null"=3, d={}}]\n'),
        ("$root( *P[x=1]as  Q( $A ),DEF\tas\nR )", "$root(*P[x=1] as Q($A), DEF as R)\n"),
    ],
)
def test_printer_examples(source, canonical):
    assert format_program(parse(source)) == canonical


def test_printer_breaks_long_statements_with_four_space_indentation():
    source = (
        '$root(*deepleaps.commands.PrintCommand[content="training loss", run_cycle="TRAINING_BATCH.step:100"]'
        " -> $TRAINING_LOADER($MAIN_MODEL_LOAD -> $TRAINING_BATCH($TRAINING_STEP[lr=1e-3, betas=[0.9, 0.999]])"
        " -> MAIN_MODEL_SAVE), $EVAL)"
    )
    text = format_program(parse(source))
    assert text == (
        "$root(\n"
        '    *deepleaps.commands.PrintCommand[content="training loss", run_cycle="TRAINING_BATCH.step:100"]'
        " -> $TRAINING_LOADER(\n"
        "        $MAIN_MODEL_LOAD -> $TRAINING_BATCH(\n"
        "            $TRAINING_STEP[lr=0.001, betas=[0.9, 0.999]]\n"
        "        ) -> MAIN_MODEL_SAVE\n"
        "    ),\n"
        "    $EVAL\n"
        ")\n"
    )
    assert parse(text) == parse(source)


def test_printer_width_boundary():
    # 88 columns fit on one line; 89 do not.
    fits = "$G($" + "A" * 83 + ")"
    assert len(fits) == 88
    assert format_program(parse(fits)) == fits + "\n"
    too_long = "$G($" + "A" * 84 + ")"
    assert format_program(parse(too_long)) == "$G(\n    $" + "A" * 84 + "\n)\n"


def test_printer_keeps_comments_above_their_statement():
    source = "# header\n$root(  # open\n    $A -> $B,   # first chain\n    $A -> $C\n)\n$X  # trailing\n# footer\n"
    text = format_program(parse(source))
    assert text == ("# header\n# open\n# first chain\n$root($A -> $B, $A -> $C)\n# trailing\n$X\n# footer\n")
    assert format_program(parse(text)) == text


def test_printer_needs_no_spans():
    built = program(
        chain(instance("root", chain(klass("a.B", x=List([Integer(1), Float(0.5)])), define("C")))),
        chain(instance("D", s=String('q"\\\n'), v=Variable("x.y"), n=Null(), b=Boolean(False))),
    )
    text = format_program(built)
    assert text == '$root(*a.B[x=[1, 0.5]] -> C)\n$D[s="q\\"\\\\\\n", v=$x.y, n=null, b=false]\n'
    assert parse(text) == built


def test_inline_prints_any_node_on_one_line():
    parsed = parse(SEED)
    assert inline(parsed) == (
        "$root($TRAINER_CONTAINER_LOAD -> $TRAINING_LOADER($MAIN_MODEL_LOAD -> $TRAINING_BATCH($TRAINING_STEP)"
        " -> MAIN_MODEL_SAVE))"
    )
    assert inline(Float(1e-3)) == "0.001"
    assert inline(Argument("x", List([]))) == "x=[]"
