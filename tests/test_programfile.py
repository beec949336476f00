"""YAML command files: DEFAULT, DEFINE with inherit, verbs, settings, LOAD, positions."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepleaps.lang import ProgramError, ast, parse
from deepleaps.lang.programfile import ArgsFile, deep_merge, load_program_file, merge_loaded

SEED = Path(__file__).parent / "data" / "seed_default.yaml"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def errors(path: Path) -> str:
    with pytest.raises(ProgramError) as caught:
        load_program_file(path)
    return caught.value.render()


def test_the_seed_command_file_loads_unchanged():
    program_file = load_program_file(SEED)
    (default,) = program_file.defaults
    assert default == parse(
        "$root( $TRAINER_CONTAINER_LOAD->$TRAINING_LOADER( $MAIN_MODEL_LOAD->$TRAINING_BATCH( $TRAINING_STEP )"
        "->MAIN_MODEL_SAVE) )"
    )
    assert default.statements[0].nodes[0].span.line == 1
    assert sorted(program_file.definitions) == ["MAIN_MODEL_LOAD", "TRAINER_CONTAINER_LOAD"]
    container = program_file.definitions["TRAINER_CONTAINER_LOAD"]
    assert container.command == "TrainerContainerLoaderCommand"
    assert isinstance(container.args, ArgsFile)
    assert container.args.path == "resource/configs/trainer/ExampleContainer.yaml"
    assert (container.args.span.line, container.args.span.column) == (6, 11)
    model = program_file.definitions["MAIN_MODEL_LOAD"]
    assert model.data["required"] == ["MODEL", "OPTIMIZER"]
    assert model.args == {"MODEL": {"_reload": False, "use_hook": True, "file_name": "$latest.id"}}


def test_verbs_keep_file_order_and_settings_are_kept_apart(tmp_path):
    path = write(
        tmp_path,
        "c.yaml",
        "ADD: ['$root( *Print )']\n"
        "IMPORT_MODULE: [src.one, src.two]\n"
        "COMMAND_CONTROLLER: {ipc_host: 127.0.0.1, ipc_port: 1568}\n"
        "EXPORT: ['lr 0.1']\n",
    )
    program_file = load_program_file(path)
    assert [(call.verb, call.argument) for call in program_file.verbs] == [
        ("ADD", parse("$root( *Print )")),
        ("IMPORT_MODULE", "src.one"),
        ("IMPORT_MODULE", "src.two"),
        ("EXPORT", "lr 0.1"),
    ]
    assert program_file.settings == {"COMMAND_CONTROLLER": {"ipc_host": "127.0.0.1", "ipc_port": 1568}}


def test_inherit_chains_deep_merge(tmp_path):
    path = write(
        tmp_path,
        "c.yaml",
        "DEFINE:\n"
        "  BASE: {command: RunCommand, repeat: 2, args: {method: step, args: {lr: 0.1, momentum: 0.9}}}\n"
        "  MIDDLE: {inherit: BASE, args: {args: {lr: 0.01}}}\n"
        "  LEAF: {inherit: MIDDLE, finish: true}\n",
    )
    leaf = load_program_file(path).definitions["LEAF"]
    assert leaf.data == {
        "command": "RunCommand",
        "repeat": 2,
        "args": {"method": "step", "args": {"lr": 0.01, "momentum": 0.9}},
        "finish": True,
    }
    assert leaf.span_of("finish").line == 4 and leaf.span_of("command").line == 2


def test_deep_merge_replaces_what_is_not_a_mapping():
    assert deep_merge({"a": {"b": 1, "c": [1]}, "d": 1}, {"a": {"c": [2]}, "d": {"e": 1}}) == {
        "a": {"b": 1, "c": [2]},
        "d": {"e": 1},
    }


def test_an_inherit_cycle_is_reported_once_with_its_path(tmp_path):
    path = write(tmp_path, "c.yaml", "DEFINE:\n  A: {command: X, inherit: B}\n  B: {command: Y, inherit: A}\n")
    assert errors(path) == "\n".join(
        [
            f"{path}:3:28: error: 'inherit' forms a cycle: A -> B -> A",
            "      B: {command: Y, inherit: A}",
            "                               ^",
        ]
    )


def test_inheriting_from_a_missing_entry_suggests_a_name(tmp_path):
    path = write(tmp_path, "c.yaml", "DEFINE:\n  PRINTER: {command: X}\n  B: {inherit: PRINTR}\n")
    assert errors(path) == "\n".join(
        [
            f"{path}:3:16: error: 'B' inherits from 'PRINTR', which DEFINE does not have",
            "      B: {inherit: PRINTR}",
            "                   ^~~~~~",
            "  = did you mean 'PRINTER'?",
        ]
    )


def test_args_given_as_a_path_load_from_the_roots(tmp_path):
    write(tmp_path, "trainer.yaml", "model: {class: x.Y}\nseed: 3\n")
    path = write(
        tmp_path, "c.yaml", "DEFINE:\n  T: {command: X, args: trainer.yaml}\n  M: {command: X, args: nope.yaml}\n"
    )
    program_file = load_program_file(path)
    assert program_file.definitions["T"].args.load([tmp_path]) == {"model": {"class": "x.Y"}, "seed": 3}
    with pytest.raises(ProgramError) as caught:
        program_file.definitions["M"].args.load([tmp_path], program_file.source)
    assert caught.value.render().splitlines()[0] == (
        f"{path}:3:25: error: args file not found: 'nope.yaml' (looked in {tmp_path / 'nope.yaml'})"
    )


def test_program_strings_report_positions_in_the_yaml_file(tmp_path):
    path = write(
        tmp_path,
        "c.yaml",
        'DEFAULT:\n  - "$root( $A -> )"\n  - |\n    $root(\n      $B %\n    )\n',
    )
    assert errors(path) == "\n".join(
        [
            f"{path}:2:19: error: '->' must be followed by a node ($NAME, NAME or *Class)",
            '      - "$root( $A -> )"',
            "                      ^",
            f"{path}:5:10: error: unexpected character '%'; expected ')', '->', ',', '(' or '['",
            "          $B %",
            "             ^",
        ]
    )


def test_spans_of_a_block_program_point_into_the_yaml_file(tmp_path):
    path = write(tmp_path, "c.yaml", "DEFAULT:\n  - |\n    $root(\n        $A -> $B\n    )\n")
    (program,) = load_program_file(path).defaults
    a, b = program.statements[0].nodes[0].children[0].nodes
    assert (a.span.file, a.span.line, a.span.column) == (str(path), 4, 9)
    assert (b.span.line, b.span.column) == (4, 15)


def test_yaml_errors_have_line_and_column(tmp_path):
    path = write(tmp_path, "c.yaml", "DEFINE:\n  A: {command: X\n  B: 1\n")
    assert errors(path) == "\n".join(
        [
            f"{path}:3:4: error: YAML: while parsing a flow mapping expected ',' or '}}', but got ':'",
            "      B: 1",
            "       ^",
        ]
    )


@pytest.mark.parametrize(
    ("text", "first_line"),
    [
        ("DEFINE:\n  A: {command: X}\n  A: {command: Y}\n", "3:3: error: duplicate key 'A'"),
        ("ADDD: [x]\n", "1:1: error: unknown top-level key 'ADDD'"),
        ("- a\n- b\n", "1:1: error: a command file is a mapping of DEFAULT, DEFINE, verbs and settings"),
        ("DEFAULT: [12]\n", "1:11: error: DEFAULT[0] must be program text (a string)"),
        ("DEFINE:\n  A: 3\n", "2:6: error: DEFINE entry 'A' must be a mapping of keys such as 'command'"),
    ],
)
def test_command_file_mistakes(tmp_path, text, first_line):
    path = write(tmp_path, "c.yaml", text)
    assert errors(path).splitlines()[0] == f"{path}:{first_line}"


def test_a_command_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b'DEFAULT: ["\xff"]\n')
    assert errors(path).splitlines()[0] == f"{path}:1:12: error: the file is not valid UTF-8 (byte 0xff)"


def test_load_merges_definitions_under_the_files_own(tmp_path):
    write(tmp_path, "more.yaml", "DEFINE:\n  EXTRA: {command: X}\n  SHARED: {command: FROM_MORE}\n")
    path = write(tmp_path, "c.yaml", "LOAD: [more.yaml]\nDEFINE:\n  SHARED: {command: OWN}\n")
    merged = merge_loaded(load_program_file(path), [tmp_path])
    assert {name: d.command for name, d in merged.definitions.items()} == {"EXTRA": "X", "SHARED": "OWN"}
    assert set(merged.sources) == {str(path), str(tmp_path / "more.yaml")}
    missing = write(tmp_path, "d.yaml", "LOAD: [absent.yaml]\n")
    with pytest.raises(ProgramError) as caught:
        merge_loaded(load_program_file(missing), [tmp_path])
    assert caught.value.render().splitlines()[0] == f"{missing}:1:8: error: LOAD: no command file 'absent.yaml'"


def test_yaml_variables_stay_text_until_compiled(tmp_path):
    path = write(tmp_path, "c.yaml", "DEFINE:\n  A: {command: X, base_path: $base}\n")
    assert load_program_file(path).definitions["A"].data["base_path"] == "$base"
    assert isinstance(parse("$a[x=$base]").statements[0].nodes[0].arguments[0].value, ast.Variable)
