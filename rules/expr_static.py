"""Static checks of a parsed rule expression: refuse at load time what the evaluator would refuse.

The evaluator (simpleeval) refuses, at the first evaluation: syntax it does not implement (``await``,
starred arguments, walrus, ``lambda``), operators it has no function for (``@``), the methods
``format``/``format_map``/``mro`` (escapes through format strings), names starting with ``_``, and
arithmetic on constants whose result is too big (``9**9**9``, ``'x' * 10**6``, shifts). A division
by a constant zero can only fail. Pure: no IO, no evaluation of anything but bounded constants.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping
from typing import Any

from simpleeval import DISALLOW_METHODS, DISALLOW_PREFIXES, MAX_POWER, MAX_STRING_LENGTH, InvalidExpression

Operators = Mapping[type[ast.AST], Callable[..., Any]]

#: Expression nodes the evaluator implements (plus the structural nodes inside them).
SUPPORTED_NODES: frozenset[type[ast.AST]] = frozenset(
    {
        ast.Expression,
        ast.Attribute,
        ast.BinOp,
        ast.BoolOp,
        ast.Call,
        ast.Compare,
        ast.Constant,
        ast.Dict,
        ast.DictComp,
        ast.FormattedValue,
        ast.GeneratorExp,
        ast.IfExp,
        ast.JoinedStr,
        ast.List,
        ast.ListComp,
        ast.Name,
        ast.Set,
        ast.Slice,
        ast.Subscript,
        ast.Tuple,
        ast.UnaryOp,
        ast.keyword,
        ast.comprehension,
        ast.Load,
        ast.Store,
        ast.And,
        ast.Or,
    }
)
#: Operators the evaluator has a function for.
SUPPORTED_OPERATORS: frozenset[type[ast.AST]] = frozenset(
    {
        ast.Add,
        ast.BitAnd,
        ast.BitOr,
        ast.BitXor,
        ast.Div,
        ast.Eq,
        ast.FloorDiv,
        ast.Gt,
        ast.GtE,
        ast.In,
        ast.Invert,
        ast.Is,
        ast.IsNot,
        ast.LShift,
        ast.Lt,
        ast.LtE,
        ast.Mod,
        ast.Mult,
        ast.Not,
        ast.NotEq,
        ast.NotIn,
        ast.Pow,
        ast.RShift,
        ast.Sub,
        ast.UAdd,
        ast.USub,
    }
)
_NODE_WORDS = {
    ast.Lambda: "lambda",
    ast.NamedExpr: "':=' (assignment)",
    ast.Starred: "'*' unpacking",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.SetComp: "set comprehensions",
    ast.MatMult: "'@'",
}
_UNKNOWN = object()
_WIDTH = re.compile(r"%(\([^)]*\))?[-#0 +]*[\d*.]")


class StaticCheckError(ValueError):
    """The expression can only fail when evaluated."""


def check_static(tree: ast.AST, operators: Operators) -> None:
    """Raise :class:`StaticCheckError` naming the first construct the evaluator would refuse.

    ``operators`` are the evaluator's own operator functions: constant parts are computed with them,
    so a constant expression is refused exactly when evaluating it would fail.
    """
    for node in ast.walk(tree):
        kind = type(node)
        if isinstance(node, ast.operator | ast.unaryop | ast.cmpop | ast.boolop):
            if kind not in SUPPORTED_OPERATORS and kind not in (ast.And, ast.Or):
                raise StaticCheckError(f"operator {_NODE_WORDS.get(kind, kind.__name__)} is not supported")
            continue
        if kind not in SUPPORTED_NODES:
            raise StaticCheckError(f"{_NODE_WORDS.get(kind, kind.__name__)} is not supported")
        if isinstance(node, ast.Attribute):
            if node.attr in DISALLOW_METHODS:
                raise StaticCheckError(f"the method {node.attr!r} is not allowed (format strings can escape)")
            if any(node.attr.startswith(p) for p in DISALLOW_PREFIXES):
                raise StaticCheckError(f"attribute {node.attr!r} is not allowed")
        if isinstance(node, ast.Call) and any(k.arg is None for k in node.keywords):
            raise StaticCheckError("'**' unpacking is not supported")
        if isinstance(node, ast.Dict) and any(k is None for k in node.keys):
            raise StaticCheckError("'**' unpacking is not supported")
    _fold(tree, operators)


def _fold(node: ast.AST, ops: Operators) -> Any:
    """The constant value of ``node`` if it is made of constants only, else ``_UNKNOWN``; checks sizes."""
    if isinstance(node, ast.Expression):
        return _fold(node.body, ops)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.List | ast.Tuple):
        items = [_fold(e, ops) for e in node.elts]
        if any(v is _UNKNOWN for v in items):
            return _UNKNOWN
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.UnaryOp):
        v = _fold(node.operand, ops)
        if v is _UNKNOWN or not isinstance(node.op, ast.USub | ast.UAdd) or not isinstance(v, int | float):
            return _UNKNOWN
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp):
        left, right = _fold(node.left, ops), _fold(node.right, ops)
        divides = isinstance(node.op, ast.Div | ast.FloorDiv | ast.Mod) and not isinstance(left, str)
        if divides and isinstance(right, int | float) and not isinstance(right, bool) and right == 0:
            raise StaticCheckError("division by zero")
        if isinstance(node.op, ast.Pow) and isinstance(right, int | float) and abs(right) > MAX_POWER:
            # the evaluator refuses this for any base but a missing field
            raise StaticCheckError(f"the exponent {right} is too big (at most {MAX_POWER})")
        if isinstance(node.op, ast.Mult):
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(n, int) and len(seq) * n > MAX_STRING_LENGTH:
                    raise StaticCheckError(f"repeating a value {n} times is too long (at most {MAX_STRING_LENGTH})")
        op = ops.get(type(node.op))
        sized = isinstance(node.op, ast.Mod) and isinstance(left, str) and _WIDTH.search(left) is not None
        if left is _UNKNOWN or right is _UNKNOWN or op is None or sized:
            return _UNKNOWN  # '%' formatting with a width or precision could be huge: not computed here
        try:
            return op(left, right)
        except InvalidExpression as exc:
            raise StaticCheckError(f"the result of {ast.unparse(node)!r} is too big") from exc
        except (ArithmeticError, TypeError, ValueError) as exc:
            raise StaticCheckError(f"{ast.unparse(node)!r} fails: {exc}") from exc
    for child in ast.iter_child_nodes(node):
        _fold(child, ops)
    return _UNKNOWN
