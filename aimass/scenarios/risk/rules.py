"""Rules an analyst edits without retraining: ``amount > 5000 and score > 0.3`` → block.

A rule's ``when`` is a small expression language read with Python's parser (``ast``) but never
evaluated by Python: only the node kinds below are accepted, and this module walks the tree
itself. So a rule can compare and combine numbers and strings of the event (its fields, the
model's ``score`` and the computed features by name); it cannot call, index, import or reach
any attribute. Length and size are bounded.

    expr  := expr (and|or) expr | not expr | sum (< <= > >= == !=) sum ... | sum
    sum   := sum (+ - * /) sum | -sum | number | 'string' | name | (expr)

A name the event lacks makes the rule not fire (a missing field is not a match); a division by
zero is 0.
"""

from __future__ import annotations

import ast
import operator
from dataclasses import dataclass
from typing import Any

from aimass.errors import InvalidInput

ACTIONS = ("allow", "review", "block")
"""Decisions in increasing severity."""
MAX_RULE_CHARS = 500
MAX_RULE_NODES = 200
MAX_RULES = 100

_COMPARE = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_ARITH = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}
_ALLOWED = (
    ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd,
    ast.Compare, ast.BinOp, ast.Div, ast.Constant, ast.Name, ast.Load,
    *_COMPARE, *_ARITH,
)  # fmt: skip


class _Missing(Exception):
    """A name the event does not have: the rule does not fire."""


@dataclass(frozen=True)
class Rule:
    """A named condition and the decision it asks for when it holds."""

    name: str
    when: str
    action: str
    tree: ast.Expression

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "when": self.when, "action": self.action}

    def fires(self, values: dict[str, Any]) -> bool:
        try:
            return bool(_eval(self.tree.body, values))
        except _Missing:
            return False


def parse_rule(data: Any, index: int = 0) -> Rule:
    """A rule from ``{"name", "when", "action"}``; InvalidInput naming ``rules[index]``."""
    param = f"rules[{index}]"
    if not isinstance(data, dict):
        raise InvalidInput(f"{param} must be an object with name, when and action", param=param)
    name, when, action = data.get("name"), data.get("when"), data.get("action")
    if not isinstance(name, str) or not name or len(name) > 100:
        raise InvalidInput(f"{param}.name must be a string of 1 to 100 characters", param=param)
    if action not in ACTIONS:
        raise InvalidInput(f"{param}.action must be one of {', '.join(ACTIONS)}", param=param)
    if not isinstance(when, str) or not when.strip() or len(when) > MAX_RULE_CHARS:
        raise InvalidInput(
            f"{param}.when must be an expression of 1 to {MAX_RULE_CHARS} characters", param=param
        )
    try:
        tree = ast.parse(when.strip(), mode="eval")
    except (SyntaxError, ValueError) as exc:
        raise InvalidInput(f"{param}.when is not an expression: {exc.msg}", param=param) from None
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_RULE_NODES:
        raise InvalidInput(f"{param}.when has over {MAX_RULE_NODES} parts", param=param)
    for node in nodes:
        if not isinstance(node, _ALLOWED):
            raise InvalidInput(
                f"{param}.when: {type(node).__name__} is not allowed (only comparisons, "
                "and/or/not, + - * /, numbers, strings and names)",
                param=param,
            )
        if isinstance(node, ast.Constant) and not isinstance(node.value, int | float | str):
            raise InvalidInput(f"{param}.when: {node.value!r} is not allowed", param=param)
    return Rule(name, when.strip(), action, tree)


def parse_rules(data: Any) -> list[Rule]:
    if not isinstance(data, list) or len(data) > MAX_RULES:
        raise InvalidInput(f"rules must be a list of at most {MAX_RULES} rules", param="rules")
    rules = [parse_rule(item, i) for i, item in enumerate(data)]
    names = [r.name for r in rules]
    if len(set(names)) != len(names):
        raise InvalidInput("rules: each rule needs its own name", param="rules")
    return rules


def decide(
    score: float, thresholds: dict[str, float], rules: list[Rule], values: dict[str, Any]
) -> tuple[str, list[str]]:
    """The decision for ``score`` (``block`` at or over the block threshold, ``review`` at or
    over the review one) made more severe by any rule that fires; and the rules that fired."""
    decision = "allow"
    if score >= thresholds["block"]:
        decision = "block"
    elif score >= thresholds["review"]:
        decision = "review"
    fired = [r for r in rules if r.fires(values)]
    for rule in fired:
        if ACTIONS.index(rule.action) > ACTIONS.index(decision):
            decision = rule.action
    return decision, [r.name for r in fired]


def _eval(node: ast.AST, values: dict[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in values or values[node.id] is None:
            raise _Missing(node.id)
        return values[node.id]
    if isinstance(node, ast.BoolOp):
        results = (_eval(v, values) for v in node.values)
        return all(results) if isinstance(node.op, ast.And) else any(results)
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, values)
        if isinstance(node.op, ast.Not):
            return not value
        return _numeric(value) * (-1 if isinstance(node.op, ast.USub) else 1)
    if isinstance(node, ast.BinOp):
        left, right = _numeric(_eval(node.left, values)), _numeric(_eval(node.right, values))
        if isinstance(node.op, ast.Div):
            return left / right if right else 0.0
        return _ARITH[type(node.op)](left, right)
    if isinstance(node, ast.Compare):
        left = _eval(node.left, values)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _eval(comparator, values)
            try:
                if not _COMPARE[type(op)](left, right):
                    return False
            except TypeError:  # a string against a number: not a match
                return False
            left = right
        return True
    raise _Missing(type(node).__name__)  # unreachable: parse_rule admits the kinds above


def _numeric(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            return float(value)
        except (TypeError, ValueError, OverflowError):
            raise _Missing(repr(value)) from None
    try:
        return float(value)
    except OverflowError:  # an integer beyond a float's range
        raise _Missing(repr(value)) from None
