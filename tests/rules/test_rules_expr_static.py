"""`rules check` refuses statically what the evaluator would refuse (property over constant trees)."""

from __future__ import annotations

import ast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.expr import ExpressionError, compile_expression

_LEAVES = st.sampled_from(["0", "1", "2", "3", "9", "12", "'ab'", "[1]", "(-1)", "0.5"])
_OPS = st.sampled_from(["+", "-", "*", "**", "<<", ">>", "/", "//", "%"])


def _trees(depth: int) -> st.SearchStrategy[str]:
    if depth == 0:
        return _LEAVES
    sub = _trees(depth - 1)
    return st.one_of(sub, st.builds(lambda a, op, b: f"({a} {op} {b})", sub, _OPS, sub))


def _evaluates(source: str) -> bool:
    """Does the evaluator accept a constant expression (bypassing the static check)?"""
    from rules.expr import Expression

    try:
        Expression(source, ast.parse(source, mode="eval").body).evaluate({}, {})
    except ExpressionError:
        return False
    return True


@settings(max_examples=400, deadline=None)
@given(_trees(3))
def test_a_constant_expression_is_refused_statically_exactly_when_evaluation_fails(source: str) -> None:
    try:
        compile_expression(source)
        accepted = True
    except ExpressionError:
        accepted = False
    assert accepted == _evaluates(source), source


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("9**9**9 > 1", "exponent 387420489 is too big"),
        ("twin.level ** 5000000", "exponent 5000000 is too big"),
        ("'x' * 10**6 == event.data.x", "too long"),
        ("[0] * 200000", "too long"),
        ("1 << 100000", "too big"),
        ("'{0.__class__}'.format(event)", "'format' is not allowed"),
        ("'{x}'.format_map(event)", "'format_map' is not allowed"),
        ("twin.a / 0", "division by zero"),
        ("twin.a @ twin.b", "'@'"),
        ("{**event}", "unpacking"),
        ("len(*event.data)", "unpacking"),
    ],
)
def test_refused_constructs_are_named(source: str, message: str) -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression(source)
    assert message in info.value.message


@pytest.mark.parametrize(
    "source",
    ["twin.hold_seconds > 10", "'ab' * 3 == event.data.x", "'%s-%s' % (event.device, 1)", "2 ** 10 > twin.n"],
)
def test_ordinary_expressions_still_pass(source: str) -> None:
    compile_expression(source)
