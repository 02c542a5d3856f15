"""Sandboxed conditions and ``{{ }}`` templates over simpleeval (never Python ``eval``)."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from simpleeval import DEFAULT_OPERATORS, EvalWithCompoundTypes, FeatureNotAvailable, InvalidExpression

from rules.expr_static import StaticCheckError, check_static

#: Root names a rule expression may use; functions are added by the engine's context.
CONTEXT_NAMES: frozenset[str] = frozenset(
    {"event", "twin", "device", "subject", "site", "time", "trigger", "rule", "true", "false", "none"}
)
FUNCTION_NAMES: frozenset[str] = frozenset(
    {
        "in_zone",
        "in_window",
        "in_pickup_window",
        "guardian_nearby",
        "tags_near",
        "distance",
        "twin_of",
        "online",
        "last_seen",
        "offline_for",
        "in_maintenance",
        "len",
        "min",
        "max",
        "abs",
        "round",
        "int",
        "float",
        "str",
        "bool",
        "any",
        "all",
        "lower",
        "upper",
    }
)
ALLOWED_NAMES = CONTEXT_NAMES | FUNCTION_NAMES

_TEMPLATE_RE = re.compile(r"\{\{(.*?)\}\}", re.S)


class ExpressionError(Exception):
    """An expression failed to parse or to evaluate."""

    def __init__(self, expression: str, message: str) -> None:
        super().__init__(f"{message} in expression {expression!r}")
        self.expression = expression
        self.message = message


def _ordered(compare: Callable[[Any, Any], Any]) -> Callable[[Any, Any], bool]:
    def safe(a: Any, b: Any) -> bool:
        if a is None or b is None:
            return False
        try:
            return bool(compare(a, b))
        except TypeError:  # values that have no order between them ('3' < 4)
            return False

    return safe


def _missing_propagates(operate: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def safe(a: Any, b: Any) -> Any:
        return None if a is None or b is None else operate(a, b)

    return safe


def _contains(a: Any, b: Any) -> bool:
    try:
        return b is not None and a in b
    except TypeError:  # 3 in 'abc'
        return False


#: The one rule for missing fields (docs/rules.md): a missing field is ``None``; arithmetic with
#: ``None`` gives ``None``; an ordering comparison (<, <=, >, >=) with ``None`` or between values of
#: types that have no order is false; ``in`` a missing container is false. Never an exception.
_OPERATORS: dict[type[ast.AST], Callable[..., Any]] = {
    **DEFAULT_OPERATORS,
    **{o: _ordered(DEFAULT_OPERATORS[o]) for o in (ast.Gt, ast.Lt, ast.GtE, ast.LtE)},
    **{
        o: _missing_propagates(DEFAULT_OPERATORS[o])
        for o in (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)
    },
    ast.USub: lambda a: None if a is None else -a,
    ast.In: _contains,
    ast.NotIn: lambda a, b: not _contains(a, b),
}


class _RuleEval(EvalWithCompoundTypes):  # type: ignore[misc]
    """simpleeval with forgiving lookups: a missing key of a dict (or anything of None) is None.

    Twins and event payloads are partial by design; ``twin.door == 'open'`` must be false, not
    an error, while the field is unknown, and so is ``twin.hold_seconds > 10`` (see ``_OPERATORS``).
    Dict attributes never reach dict methods.
    """

    def _eval_attribute(self, node: ast.Attribute) -> Any:
        if node.attr.startswith("_"):
            raise FeatureNotAvailable(f"access to {node.attr!r} is not allowed")
        value = self._eval(node.value)
        if isinstance(value, dict):
            return value.get(node.attr)
        if value is None:
            return None
        return super()._eval_attribute(node)

    def _eval_subscript(self, node: ast.Subscript) -> Any:
        container = self._eval(node.value)
        if isinstance(container, dict):
            return container.get(self._eval(node.slice))
        if container is None:
            return None
        return super()._eval_subscript(node)


@dataclass(frozen=True, slots=True)
class Expression:
    """A parsed expression, evaluated against a name mapping."""

    source: str
    node: ast.expr

    def evaluate(self, names: Mapping[str, Any], functions: Mapping[str, Callable[..., Any]]) -> Any:
        """Evaluate; any failure becomes :class:`ExpressionError`."""
        ev = _RuleEval(operators=_OPERATORS, names=dict(names), functions=dict(functions))
        try:
            return ev.eval(self.source, previously_parsed=self.node)
        except (InvalidExpression, ArithmeticError, TypeError, ValueError, KeyError, IndexError) as exc:
            raise ExpressionError(self.source, f"{type(exc).__name__}: {exc}") from exc
        except AttributeError as exc:
            raise ExpressionError(self.source, f"no such attribute: {exc}") from exc


def compile_expression(source: str, extra_names: frozenset[str] = frozenset()) -> Expression:
    """Parse and statically check an expression (syntax, a single expression, known names)."""
    text = str(source).strip()
    if not text:
        raise ExpressionError(text, "empty expression")
    try:
        module = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(text, f"syntax error: {exc.msg}") from exc
    allowed = ALLOWED_NAMES | extra_names
    bound: set[str] = set()
    for node in ast.walk(module):
        if isinstance(node, ast.comprehension):
            for target in ast.walk(node.target):
                if isinstance(target, ast.Name):
                    bound.add(target.id)
        if isinstance(node, ast.Lambda):
            raise ExpressionError(text, "lambda is not allowed")
    for node in ast.walk(module):
        if isinstance(node, ast.Name) and node.id not in allowed and node.id not in bound:
            hint = _suggest(node.id, allowed)
            raise ExpressionError(text, f"unknown name {node.id!r}{hint}")
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise ExpressionError(text, f"private attribute {node.attr!r} is not allowed")
    try:
        check_static(module, _OPERATORS)
    except StaticCheckError as exc:
        raise ExpressionError(text, str(exc)) from exc
    return Expression(text, module.body)


def _suggest(name: str, choices: frozenset[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, sorted(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; use one of {', '.join(sorted(CONTEXT_NAMES))}"


@dataclass(frozen=True, slots=True)
class Template:
    """A string with ``{{ expr }}`` parts; a template that is one whole ``{{ }}`` keeps the value type."""

    source: str
    parts: tuple[str | Expression, ...]

    def render(self, names: Mapping[str, Any], functions: Mapping[str, Callable[..., Any]]) -> Any:
        """Render to a string (or to the raw value when the template is one expression)."""
        if len(self.parts) == 1 and isinstance(self.parts[0], Expression):
            return self.parts[0].evaluate(names, functions)
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, Expression):
                value = part.evaluate(names, functions)
                out.append("" if value is None else str(value))
            else:
                out.append(part)
        return "".join(out)


def compile_template(source: str) -> Template:
    """Split a template into literal text and compiled expressions."""
    parts: list[str | Expression] = []
    pos = 0
    for m in _TEMPLATE_RE.finditer(source):
        if m.start() > pos:
            parts.append(source[pos : m.start()])
        parts.append(compile_expression(m.group(1)))
        pos = m.end()
    if pos < len(source):
        parts.append(source[pos:])
    if "{{" in "".join(p for p in parts if isinstance(p, str)):
        raise ExpressionError(source, "unclosed '{{' in template")
    return Template(source, tuple(parts))


def compile_value(value: Any) -> Any:
    """Compile every string in a nested value into a :class:`Template` (others stay as they are)."""
    if isinstance(value, str):
        return compile_template(value) if "{{" in value else value
    if isinstance(value, dict):
        return {str(k): compile_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [compile_value(v) for v in value]
    return value


def render_value(value: Any, names: Mapping[str, Any], functions: Mapping[str, Callable[..., Any]]) -> Any:
    """Render a value compiled by :func:`compile_value`."""
    if isinstance(value, Template):
        return value.render(names, functions)
    if isinstance(value, dict):
        return {k: render_value(v, names, functions) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, names, functions) for v in value]
    return value
