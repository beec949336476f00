"""Compile errors, with their exact text: every mistake a user can make in a
program names the file, line and column, shows the line with a caret and, where
it helps, the closest valid name."""

from __future__ import annotations

import textwrap

import pytest
from recording import RECORDING

from deepleaps.compiler import Registry, compile_plan, compile_source
from deepleaps.lang import InternalError, ProgramError
from deepleaps.lang.programfile import load_program_file

DEFINES = """\
DEFINE:
  TRAINING_STEP: {command: Rec, args: {tag: step}}
  SET_X: {command: SetCommand}
  BAD_CLASS: {command: Recc}
"""


def error_text(text: str, defines: str = DEFINES) -> str:
    definitions = load_program_file("defs.yaml", defines)
    with pytest.raises(ProgramError) as caught:
        compile_source(text, "prog.dl", definitions=definitions, registry=RECORDING)
    return caught.value.render()


def expect(text: str, rendered: str) -> None:
    assert error_text(text) == textwrap.dedent(rendered).strip("\n")


# ---- names ------------------------------------------------------------------------------


def test_unknown_name_with_the_closest_one():
    expect(
        "$root( $TRAINING_STPE )",
        """
        prog.dl:1:8: error: unknown name '$TRAINING_STPE'
            $root( $TRAINING_STPE )
                   ^~~~~~~~~~~~~~
          = did you mean 'TRAINING_STEP'?
        """,
    )


def test_unknown_definition_for_a_fresh_instance():
    expect(
        "$root( TRAINING_STEPS )",
        """
        prog.dl:1:8: error: unknown definition 'TRAINING_STEPS'
            $root( TRAINING_STEPS )
                   ^~~~~~~~~~~~~~
          = did you mean 'TRAINING_STEP'?
        """,
    )


def test_unknown_name_far_from_any_gets_no_hint():
    expect(
        "$root( $ZZZ )",
        """
        prog.dl:1:8: error: unknown name '$ZZZ'
            $root( $ZZZ )
                   ^~~~
        """,
    )


def test_unknown_class_with_the_closest_one():
    expect(
        "$root( *Recc )",
        """
        prog.dl:1:8: error: unknown command class '*Recc'
            $root( *Recc )
                   ^~~~~
          = did you mean 'Rec'?
        """,
    )


def test_unknown_class_in_a_define_entry_points_into_the_yaml_file():
    expect(
        "$root( $BAD_CLASS )",
        """
        defs.yaml:4:24: error: unknown command class 'Recc' in DEFINE entry 'BAD_CLASS'
              BAD_CLASS: {command: Recc}
                                   ^~~~
          = did you mean 'Rec'?
        """,
    )


def test_a_label_that_names_a_node_already():
    expect(
        "$root( $TRAINING_STEP -> *Rec as TRAINING_STEP )",
        """
        prog.dl:1:34: error: label 'TRAINING_STEP' is taken: the program has a node 'TRAINING_STEP' (at prog.dl:1:8)
            $root( $TRAINING_STEP -> *Rec as TRAINING_STEP )
                                             ^~~~~~~~~~~~~
          = labels and instance names are one namespace: choose another label
        """,
    )


def test_a_label_given_twice():
    expect(
        '$root( *Rec as R )\n$root( *Rec[tag="x"] as R )',
        """
        prog.dl:2:25: error: label 'R' is taken: the program has a node 'R' (at prog.dl:1:8)
            $root( *Rec[tag="x"] as R )
                                    ^
          = labels and instance names are one namespace: choose another label
        """,
    )


def test_the_root_is_no_label():
    expect(
        "$root( *Graph as root )",
        """
        prog.dl:1:18: error: label 'root' is taken: the program has a node 'root'
            $root( *Graph as root )
                             ^~~~
          = labels and instance names are one namespace: choose another label
        """,
    )


def test_a_label_on_an_instance_reference():
    expect(
        '$root( $TRAINING_STEP[tag="x"] as S )',
        """
        prog.dl:1:32: error: '$TRAINING_STEP' names an instance already and cannot take a label
            $root( $TRAINING_STEP[tag="x"] as S )
                                           ^~~~
          = a label names a fresh instance: 'TRAINING_STEP as S' or '*Class as S'
        """,
    )


def test_a_reference_before_its_label():
    expect(
        "$root( $R -> *Rec as R )",
        """
        prog.dl:1:8: error: '$R' comes before the node labelled 'R'
            $root( $R -> *Rec as R )
                   ^~
          = a label is known from the node it is written on: write the labelled node first
        """,
    )


def test_a_labelled_node_that_failed_is_reported_once():
    # $B after it says nothing more: the label was written, its node failed.
    expect(
        "$root( BAD_CLASS as B -> $B )",
        """
        defs.yaml:4:24: error: unknown command class 'Recc' in DEFINE entry 'BAD_CLASS'
              BAD_CLASS: {command: Recc}
                                   ^~~~
          = did you mean 'Rec'?
        """,
    )


def test_root_cannot_be_a_child():
    expect(
        "$root( $root )",
        """
        prog.dl:1:8: error: '$root' is the root graph and cannot be a child
            $root( $root )
                   ^~~~~
        """,
    )


def test_an_instance_has_one_parent():
    expect(
        "$root( *Graph( $TRAINING_STEP ), $TRAINING_STEP )",
        """
        prog.dl:1:34: error: '$TRAINING_STEP' already belongs to graph 'Graph'; a node has one parent (write 'TRAINING_STEP' for a new instance)
            $root( *Graph( $TRAINING_STEP ), $TRAINING_STEP )
                                             ^~~~~~~~~~~~~~
        """,  # noqa: E501
    )


# ---- structure ------------------------------------------------------------------------------


def test_children_on_a_leaf():
    expect(
        "$root( *Rec( *Graph ) )",
        """
        prog.dl:1:8: error: '*Rec' is a leaf command (Rec) and cannot have children
            $root( *Rec( *Graph ) )
                   ^~~~
        """,
    )


def test_children_on_a_leaf_from_define():
    expect(
        "TRAINING_STEP( *Rec )",
        """
        prog.dl:1:1: error: 'TRAINING_STEP' is a leaf command (Rec) and cannot have children
            TRAINING_STEP( *Rec )
            ^~~~~~~~~~~~~
        """,
    )


def test_cycle_prints_its_path():
    expect(
        '$root( *Rec[tag="a"] -> *Rec[tag="b"] -> *Rec[tag="c"] -> $Rec_1 )',
        """
        prog.dl:1:59: error: the '->' edges of 'root' form a cycle: Rec_1 -> Rec_2 -> Rec_1
            $root( *Rec[tag="a"] -> *Rec[tag="b"] -> *Rec[tag="c"] -> $Rec_1 )
                                                                      ^~~~~~
        """,
    )


def test_cycle_across_chains_and_statements():
    expect(
        "*Graph( *Rec -> *Rec )\n$Graph( $Rec_1 -> $Rec )",
        """
        prog.dl:2:19: error: the '->' edges of 'Graph' form a cycle: Rec -> Rec_1 -> Rec
            $Graph( $Rec_1 -> $Rec )
                              ^~~~
        """,
    )


def test_duplicate_edge():
    expect(
        "$root( *Rec -> *Rec, $Rec -> $Rec_1 )",
        """
        prog.dl:1:30: error: duplicate edge Rec -> Rec_1 in 'root'
            $root( *Rec -> *Rec, $Rec -> $Rec_1 )
                                         ^~~~~~
        """,
    )


# ---- arguments ----------------------------------------------------------------------------------


def test_unknown_argument_with_the_closest_one():
    expect(
        '$root( *Rec[tga="x"] )',
        """
        prog.dl:1:13: error: unknown argument 'tga' for Rec (node 'Rec')
            $root( *Rec[tga="x"] )
                        ^~~~~~~
          = did you mean 'tag'?
        """,
    )


def test_misspelt_node_option_gets_the_option_as_hint():
    expect(
        "$root( *Rec[repeats=2] )",
        """
        prog.dl:1:13: error: unknown argument 'repeats' for Rec (node 'Rec')
            $root( *Rec[repeats=2] )
                        ^~~~~~~~~
          = did you mean 'repeat'?
        """,
    )


def test_mistyped_argument():
    expect(
        "$root( *Rec[tag=3] )",
        """
        prog.dl:1:13: error: argument 'tag' of Rec expects str, got int 3
            $root( *Rec[tag=3] )
                        ^~~~~
        """,
    )


def test_mistyped_node_options():
    expect(
        '$root( *Rec[repeat=-2, finish=1, on_error="ignore"] )',
        """
        prog.dl:1:13: error: 'repeat' must be an integer ≥ -1 (-1 = forever), got -2
            $root( *Rec[repeat=-2, finish=1, on_error="ignore"] )
                        ^~~~~~~~~
        prog.dl:1:24: error: 'finish' must be true or false, got 1
            $root( *Rec[repeat=-2, finish=1, on_error="ignore"] )
                                   ^~~~~~~~
        prog.dl:1:34: error: 'on_error' must be one of stop, skip, remove, got 'ignore'
            $root( *Rec[repeat=-2, finish=1, on_error="ignore"] )
                                             ^~~~~~~~~~~~~~~~~
        """,
    )


def test_missing_required_argument_of_a_class_node():
    expect(
        "$root( *SetCommand[value=1] )",
        """
        prog.dl:1:8: error: SetCommand (node 'SetCommand') needs argument 'key'
            $root( *SetCommand[value=1] )
                   ^~~~~~~~~~~
        """,
    )


def test_missing_required_argument_of_a_define_entry():
    expect(
        "$root( $SET_X )",
        """
        prog.dl:1:8: error: SetCommand (node 'SET_X') needs argument 'key'
            $root( $SET_X )
                   ^~~~~~
        """,
    )


# ---- run_cycle ------------------------------------------------------------------------------


def test_run_cycle_naming_a_missing_node():
    expect(
        '$root( *Rec[run_cycle="Rek.step:2"] )',
        """
        prog.dl:1:8: error: run_cycle of 'Rec' names node 'Rek', which the program does not have
            $root( *Rec[run_cycle="Rek.step:2"] )
                   ^~~~
          = did you mean 'Rec'?
        """,
    )


def test_run_cycle_naming_a_bad_counter():
    expect(
        '$root( *Rec[run_cycle="root.stpe:2"] )',
        """
        prog.dl:1:8: error: run_cycle of 'Rec' names counter 'stpe'; counters are step, total_step, epoch
            $root( *Rec[run_cycle="root.stpe:2"] )
                   ^~~~
          = did you mean 'step'?
        """,
    )


def test_run_cycle_on_the_epoch_of_a_graph():
    expect(
        '$root( *Rec[run_cycle="root.epoch:2"] )',
        """
        prog.dl:1:8: error: run_cycle of 'Rec': 'root' is not a loader and has no 'epoch' counter
            $root( *Rec[run_cycle="root.epoch:2"] )
                   ^~~~
        """,
    )


@pytest.mark.parametrize("cycle", ["root.step", "root.step:0", "step:2", "root.step:-1"])
def test_run_cycle_that_is_not_node_counter_number(cycle):
    rendered = error_text(f'$root( *Rec[run_cycle="{cycle}"] )')
    assert rendered.splitlines()[0] == (
        f"prog.dl:1:13: error: 'run_cycle' must look like \"NODE.step:N\" with N ≥ 1, got '{cycle}'"
    )


# ---- several errors -----------------------------------------------------------------------------


def test_several_errors_are_reported_together_in_source_order():
    expect(
        "$root( *Rec[tga=1] )\n$root( $NOPE -> *Recc )\n*Rec( *Rec[tag=2] )",
        """
        prog.dl:1:13: error: unknown argument 'tga' for Rec (node 'Rec')
            $root( *Rec[tga=1] )
                        ^~~~~
          = did you mean 'tag'?
        prog.dl:2:8: error: unknown name '$NOPE'
            $root( $NOPE -> *Recc )
                   ^~~~~
        prog.dl:2:17: error: unknown command class '*Recc'
            $root( $NOPE -> *Recc )
                            ^~~~~
          = did you mean 'Rec'?
        prog.dl:3:1: error: '*Rec' is a leaf command (Rec) and cannot have children
            *Rec( *Rec[tag=2] )
            ^~~~
        prog.dl:3:12: error: argument 'tag' of Rec expects str, got int 2
            *Rec( *Rec[tag=2] )
                       ^~~~~
        """,
    )


def test_whole_plan_errors_are_sorted_into_source_order():
    # Graph is checked before Rec (it comes first in the plan), but Rec's error is on line 1.
    rendered = error_text('*Graph( *Rec[run_cycle="root.stpe:1"], *Rec )\n$Graph( $Rec_1 -> $Rec_1 )')
    assert [line for line in rendered.splitlines() if "error" in line] == [
        "prog.dl:1:9: error: run_cycle of 'Rec' names counter 'stpe'; counters are step, total_step, epoch",
        "prog.dl:2:19: error: the '->' edges of 'Graph' form a cycle: Rec_1 -> Rec_1",
    ]


def test_errors_from_the_yaml_file_and_the_program_come_together():
    rendered = error_text("$root( $BAD_CLASS, *Rec[tag=1] )")
    assert [line for line in rendered.splitlines() if "error" in line] == [
        "defs.yaml:4:24: error: unknown command class 'Recc' in DEFINE entry 'BAD_CLASS'",
        "prog.dl:1:25: error: argument 'tag' of Rec expects str, got int 1",
    ]


# ---- compiler bugs are not user errors ----------------------------------------------------------


def test_internal_errors_are_not_program_errors():
    assert not issubclass(InternalError, ProgramError)
    assert not issubclass(ProgramError, InternalError)


def test_misusing_the_compiler_is_not_reported_as_a_program_error():
    source = compile_source("*Rec", registry=RECORDING).source
    with pytest.raises(ValueError, match="unknown pass nope"):
        compile_plan(source, disabled_passes=["nope"])
    with pytest.raises(LookupError, match="'Graph' command is not registered"):
        compile_source("*Rec", registry=Registry())
