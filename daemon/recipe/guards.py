"""Guard expressions: CEL (cel-python) parsed, type-checked at load, evaluated by the batch.

This module owns the guard sub-language of recipes. Expressions are parsed by
cel-python's own parser (``celpy.Environment.compile``, a lark tree of the CEL
grammar) and evaluated by its interpreter: no ``eval``, no parser of our own. cel-python
has no type checker, so ``check`` walks cel-python's parse tree with a small type
inference over the names a recipe declares (parameters, bound results, ``visits`` and
``elapsed_h``), using CEL's own rules:

* ``&&``, ``||``, ``!`` and ``?:`` conditions take bool;
* ``+ - * / %`` take operands of one numeric type (``x * 2`` with x a double is an
  error in CEL: write ``x * 2.0``); ``+`` also joins strings;
* ``< <= > >=`` compare numbers (int and double may mix) or strings;
* ``== !=`` need the same type on both sides; ``in`` a list of the left side's type;
* ``double(x)``, ``int(x)`` and ``size(s)`` are the functions a guard may call.

A guard must be bool. ``Guard.evaluate(env)`` is the API the batch executor uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import celpy
import lark
from celpy import celtypes
from celpy.evaluation import CELEvalError, CELUnsupportedError

# CEL types we infer. "error" poisons an expression whose problem is already reported.
BOOL, INT, UINT, DOUBLE, STRING, VISITS, ERROR = (
    "bool",
    "int",
    "uint",
    "double",
    "string",
    "visits",
    "error",
)
NUMERIC: Final = frozenset({INT, UINT, DOUBLE})
MAX_GUARD_CHARS: Final = 1000

BUILTINS: Final[dict[str, str]] = {
    "visits": VISITS,  # visits.<step>: int, how often the step has started
    "elapsed_h": DOUBLE,  # process hours since the batch started
}

_ENV = celpy.Environment()


class GuardError(Exception):
    """A guard could not be evaluated (a value missing, a division by zero, ...)."""


@dataclass(frozen=True, slots=True)
class GuardProblem:
    """A problem in a guard's text; ``column`` is 1-based within the expression."""

    message: str
    column: int = 1
    hint: str = ""


def list_type(t: str) -> str:
    return f"list<{t}>"


def _first_token(tree: lark.Tree | lark.Token) -> lark.Token | None:
    if isinstance(tree, lark.Token):
        return tree
    for child in tree.children:
        if (tok := _first_token(child)) is not None:
            return tok
    return None


def _col(tree: lark.Tree | lark.Token) -> int:
    tok = _first_token(tree)
    return int(getattr(tok, "column", 1) or 1) if tok is not None else 1


class _Checker:
    def __init__(self, names: Mapping[str, str], steps: frozenset[str]) -> None:
        self.names = names
        self.steps = steps
        self.problems: list[GuardProblem] = []
        self.used: set[str] = set()
        self.visits: set[str] = set()

    def fail(self, node: lark.Tree | lark.Token, message: str, hint: str = "") -> str:
        self.problems.append(GuardProblem(message, _col(node), hint))
        return ERROR

    def infer(self, node: lark.Tree) -> str:
        handler = getattr(self, f"t_{node.data}", None)
        if handler is None:
            return self.fail(node, f"'{node.data}' is not supported in guards")
        return handler(node)

    # -- structure
    def t_expr(self, node: lark.Tree) -> str:
        if len(node.children) == 1 or node.children[1] is None:
            return self.infer(node.children[0])
        cond, then, other = (self.infer(c) for c in node.children)
        if cond not in (BOOL, ERROR):
            return self.fail(node, f"the condition of '? :' must be bool, not {cond}")
        return self.same(node, then, other, "the two branches of '? :'")

    def t_conditionalor(self, node: lark.Tree) -> str:
        return self.logical(node, "||")

    def t_conditionaland(self, node: lark.Tree) -> str:
        return self.logical(node, "&&")

    def logical(self, node: lark.Tree, op: str) -> str:
        kids = [c for c in node.children if c is not None]
        if len(kids) == 1:
            return self.infer(kids[0])
        types = [self.infer(c) for c in kids]
        for child, t in zip(kids, types, strict=True):
            if t not in (BOOL, ERROR):
                self.fail(child, f"'{op}' needs bool operands, got {t}")
        return BOOL

    def t_relation(self, node: lark.Tree) -> str:
        kids = [c for c in node.children if c is not None]
        if len(kids) == 1:
            return self.infer(kids[0])
        op_node, right_node = kids
        op = op_node.data.removeprefix("relation_")
        left, right = self.infer(op_node.children[0]), self.infer(right_node)
        if ERROR in (left, right):
            return BOOL
        symbol = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}.get(op)
        if op in ("lt", "le", "gt", "ge"):
            if (left in NUMERIC and right in NUMERIC) or left == right == STRING:
                return BOOL
            return self.fail(
                right_node,
                f"cannot compare {left} {symbol} {right}",
                "compare a number with a number, or text with text",
            )
        if op in ("eq", "ne"):
            if left == right and left != VISITS:
                return BOOL
            hint = (
                "write 5.0 instead of 5 to compare with a double"
                if {left, right} <= NUMERIC
                else ""
            )
            return self.fail(right_node, f"cannot compare {left} {symbol} {right}", hint)
        if right == list_type(left):  # op == "in"
            return BOOL
        return self.fail(right_node, f"'in' needs a list of {left}, got {right}")

    def t_addition(self, node: lark.Tree) -> str:
        return self.arith(node, {"addition_add": "+", "addition_sub": "-"})

    def t_multiplication(self, node: lark.Tree) -> str:
        return self.arith(
            node, {"multiplication_mul": "*", "multiplication_div": "/", "multiplication_mod": "%"}
        )

    def arith(self, node: lark.Tree, ops: dict[str, str]) -> str:
        kids = [c for c in node.children if c is not None]
        if len(kids) == 1:
            return self.infer(kids[0])
        op_node, right_node = kids
        symbol = ops[op_node.data]
        left, right = self.infer(op_node.children[0]), self.infer(right_node)
        if ERROR in (left, right):
            return ERROR
        if symbol == "+" and left == right == STRING:
            return STRING
        if symbol == "%" and not left == right == INT:
            return self.fail(right_node, f"'%' needs two ints, got {left} % {right}")
        if left in NUMERIC and left == right:
            return left
        hint = ""
        if {left, right} <= NUMERIC:
            hint = "CEL does not mix int and double: write 2.0 for 2, or double(name)"
        return self.fail(right_node, f"cannot apply '{symbol}' to {left} and {right}", hint)

    def t_unary(self, node: lark.Tree) -> str:
        kids = node.children
        if len(kids) == 1:
            return self.infer(kids[0])
        op, operand = kids
        t = self.infer(operand)
        if op.data == "unary_not":
            return BOOL if t in (BOOL, ERROR) else self.fail(node, f"'!' needs a bool, got {t}")
        return t if t in NUMERIC | {ERROR} else self.fail(node, f"'-' needs a number, got {t}")

    def t_member(self, node: lark.Tree) -> str:
        return self.infer(node.children[0])

    def t_primary(self, node: lark.Tree) -> str:
        return self.infer(node.children[0])

    def t_paren_expr(self, node: lark.Tree) -> str:
        return self.infer(node.children[0])

    def t_member_dot(self, node: lark.Tree) -> str:
        target, name = node.children
        t = self.infer(target)
        if t == ERROR:
            return ERROR
        if t != VISITS:
            return self.fail(node, f"{t} has no field '{name}'", "only visits.<step> has fields")
        if str(name) not in self.steps:
            return self.fail(name, f"visits.{name}: there is no step '{name}'")
        self.visits.add(str(name))
        return INT

    def t_ident(self, node: lark.Tree) -> str:
        name = str(node.children[0])
        if name in ("true", "false"):
            return BOOL
        t = self.names.get(name)
        if t is None:
            return self.fail(
                node,
                f"unknown name '{name}'",
                "a guard may use parameters, bound results, visits.<step> and elapsed_h",
            )
        self.used.add(name)
        if t == VISITS and name == "visits":
            self.used.discard(name)
        return t

    def t_literal(self, node: lark.Tree) -> str:
        tok = node.children[0]
        kind = {
            "INT_LIT": INT,
            "UINT_LIT": UINT,
            "FLOAT_LIT": DOUBLE,
            "STRING_LIT": STRING,
            "MLSTRING_LIT": STRING,
            "BOOL_LIT": BOOL,
        }.get(tok.type)
        return kind or self.fail(node, f"{tok.type.removesuffix('_LIT').lower()} is not supported")

    def t_list_lit(self, node: lark.Tree) -> str:
        if not node.children or node.children[0] is None:
            return self.fail(node, "an empty list has no type")
        types = [self.infer(c) for c in node.children[0].children]
        if ERROR in types:
            return ERROR
        if len(set(types)) != 1:
            return self.fail(node, f"a list needs items of one type, got {', '.join(types)}")
        return list_type(types[0])

    def t_ident_arg(self, node: lark.Tree) -> str:
        name = str(node.children[0])
        args_node = node.children[1] if len(node.children) > 1 else None
        args = [self.infer(c) for c in args_node.children] if args_node is not None else []
        sig = {"double": ({INT, UINT, DOUBLE}, DOUBLE), "int": ({INT, UINT, DOUBLE}, INT)}
        if name == "size":
            sig = {"size": ({STRING}, INT)}
        if name not in sig:
            return self.fail(
                node, f"unknown function '{name}'", "guards may call double, int, size"
            )
        accepted, result = sig[name]
        if len(args) != 1:
            return self.fail(node, f"{name}() takes one argument, got {len(args)}")
        if args[0] not in accepted | {ERROR}:
            return self.fail(node, f"{name}() does not take {args[0]}")
        return result

    def same(self, node: lark.Tree, a: str, b: str, what: str) -> str:
        if ERROR in (a, b):
            return ERROR
        if a != b:
            return self.fail(node, f"{what} must have one type, got {a} and {b}")
        return a


@dataclass(frozen=True, slots=True)
class Guard:
    """A type-checked CEL guard, ready for the batch to evaluate."""

    text: str
    names: frozenset[str]  # variables the guard reads (not visits)
    visits: frozenset[str]  # steps whose visit count it reads
    types: Mapping[str, str] = field(repr=False)
    _ast: Any = field(repr=False, compare=False)

    def evaluate(self, env: Mapping[str, Any]) -> bool:
        """Evaluate with ``env``: variable values by name, ``visits`` a step -> count map,
        ``elapsed_h`` process hours. Raises GuardError when it cannot decide."""
        activation: dict[str, Any] = {}
        for name in self.names:
            if name not in env or env[name] is None:
                raise GuardError(f"{self.text!r} needs {name}, which has no value yet")
            activation[name] = _to_cel(name, self.types[name], env[name])
        if self.visits:
            counts = env.get("visits") or {}
            activation["visits"] = celtypes.MapType(
                {
                    celtypes.StringType(s): celtypes.IntType(int(counts.get(s, 0)))
                    for s in self.visits
                }
            )
        try:
            result = _ENV.program(self._ast).evaluate(activation)
        except (CELEvalError, CELUnsupportedError, TypeError, ValueError, ArithmeticError) as exc:
            raise GuardError(f"{self.text!r}: {exc.args[0] if exc.args else exc}") from exc
        if isinstance(result, CELEvalError):
            raise GuardError(f"{self.text!r}: {result.args[0] if result.args else result}")
        if not isinstance(result, celtypes.BoolType):
            raise GuardError(f"{self.text!r} gave {result!r}, not true or false")
        return bool(result)


def _to_cel(name: str, type_: str, value: Any) -> Any:
    try:
        if type_ == DOUBLE:
            return celtypes.DoubleType(float(value))
        if type_ == INT:
            return celtypes.IntType(int(value))
        if type_ == BOOL:
            return celtypes.BoolType(bool(value))
        if type_ == STRING:
            return celtypes.StringType(str(value))
        if type_ == list_type(STRING):
            return celtypes.ListType([celtypes.StringType(str(v)) for v in value])
    except (TypeError, ValueError, OverflowError) as exc:
        raise GuardError(f"{name}={value!r} is not a {type_}") from exc
    raise GuardError(f"{name} has type {type_}, which guards cannot read")


def compile_guard(
    text: str, names: Mapping[str, str], steps: frozenset[str] | set[str]
) -> tuple[Guard | None, list[GuardProblem]]:
    """Parse and type-check ``text``. ``names`` maps each declared variable to its CEL type
    (``double``, ``int``, ``string``, ``bool``, ``list<string>``); built-ins are added."""
    if len(text) > MAX_GUARD_CHARS:
        return None, [GuardProblem(f"a guard is limited to {MAX_GUARD_CHARS} characters")]
    if not text.strip():
        return None, [GuardProblem("the guard is empty", hint="write a condition, e.g. x > 1.0")]
    try:
        ast = _ENV.compile(text)
    except celpy.CELParseError as exc:
        return None, [
            GuardProblem(
                "the guard is not a valid CEL expression",
                int(exc.column or 1),
                "check the operators (&&, ||, !, <, ==) and that parentheses and quotes match",
            )
        ]
    except RecursionError:
        return None, [GuardProblem("the guard is nested too deeply")]
    checker = _Checker({**BUILTINS, **names}, frozenset(steps))
    try:
        result = checker.infer(ast)
    except RecursionError:
        return None, [GuardProblem("the guard is nested too deeply")]
    if result not in (BOOL, ERROR):
        checker.problems.append(
            GuardProblem(f"a guard must be true or false, this one is {result}", 1)
        )
    if checker.problems:
        return None, checker.problems
    types = {n: checker.names[n] for n in checker.used}
    return Guard(text, frozenset(checker.used), frozenset(checker.visits), types, ast), []
