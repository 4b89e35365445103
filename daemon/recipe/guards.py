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

A guard must be bool. ``Guard.evaluate(env)`` is the API the batch executor uses; it
raises nothing but ``GuardError`` (a missing value, a division by zero, an overflow
past int64, anything cel-python's interpreter raises), which the engine treats as a
fault of the step, with the guard's text.

What the checker can prove fails is refused at load: a division or modulo by a
literal zero, an int literal outside int64 (uint64 for ``123u``), a double literal
that is not finite, and a guard too large or too deeply nested (``daemon.recipe.limits``:
characters, parse-tree nodes, parse-tree depth).

The stack. cel-python's interpreter walks the parse tree recursively, four to five
Python frames per tree level, and one parenthesis or call is about ten levels; so
``celpy.Environment()`` raises the process's recursion limit to 2500 ("to handle the
defined minimums for CEL": a dozen nested parentheses already need ~600 frames). We
keep a floor of that limit (``RECURSION_FLOOR``, set here, not left to cel-python's
side effect) and bound the tree instead: the deepest guard ``MAX_GUARD_DEPTH`` allows
needs about 1000 frames to evaluate (a test measures it), so no guard reaches the
limit from any reasonable caller. Parsing (lark's LALR parser) and the depth measure
are iterative; the type checker recurses only over trees within the bound.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import celpy
import lark
from celpy import celtypes
from celpy.evaluation import CELEvalError

from daemon.recipe.limits import (
    INT64_MAX,
    INT64_MIN,
    MAX_GUARD_CHARS,
    MAX_GUARD_DEPTH,
    MAX_GUARD_NODES,
    UINT64_MAX,
)

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
RECURSION_FLOOR: Final = 2500  # what cel-python sets; see the module docstring

BUILTINS: Final[dict[str, str]] = {
    "visits": VISITS,  # visits.<step>: int, how often the step has started
    "elapsed_h": DOUBLE,  # process hours since the batch started
}

_ENV = celpy.Environment()
if sys.getrecursionlimit() < RECURSION_FLOOR:  # pragma: no cover - cel-python >= 0.5 sets it
    sys.setrecursionlimit(RECURSION_FLOOR)


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
        if symbol in "/%" and _literal_number(right_node) == 0:
            what = "division" if symbol == "/" else "modulo"
            return self.fail(
                right_node,
                f"{what} by a literal zero: the guard could never be decided",
                "divide by a value that cannot be 0",
            )
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
        if kind is None:
            return self.fail(node, f"{tok.type.removesuffix('_LIT').lower()} is not supported")
        value = _number(tok)
        if kind == INT and not INT64_MIN <= value <= INT64_MAX:  # type: ignore[operator]
            return self.fail(node, f"{tok} is outside CEL's int range (64 bits)")
        if kind == UINT and not 0 <= value <= UINT64_MAX:  # type: ignore[operator]
            return self.fail(node, f"{tok} is outside CEL's uint range (64 bits)")
        if kind == DOUBLE and not math.isfinite(value):  # type: ignore[arg-type]
            return self.fail(node, f"{tok} is not a finite number")
        return kind

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
        ``elapsed_h`` process hours. Raises GuardError, and only GuardError, when it
        cannot decide."""
        try:
            return self._evaluate(env)
        except GuardError as exc:
            raise GuardError(f"{self.text!r}: {exc}") from exc.__cause__
        except RecursionError as exc:  # not reachable within MAX_GUARD_DEPTH; a last net
            raise GuardError(f"{self.text!r}: nested too deeply to evaluate") from exc
        except CELEvalError as exc:
            raise GuardError(f"{self.text!r}: {_reason(exc)}") from exc
        except Exception as exc:  # anything cel-python's interpreter lets out
            raise GuardError(f"{self.text!r}: {type(exc).__name__}: {exc}") from exc

    def _evaluate(self, env: Mapping[str, Any]) -> bool:
        activation: dict[str, Any] = {}
        for name in self.names:
            if name not in env or env[name] is None:
                raise GuardError(f"needs {name}, which has no value yet")
            activation[name] = _to_cel(name, self.types[name], env[name])
        if self.visits:
            counts = env.get("visits") or {}
            activation["visits"] = celtypes.MapType(
                {
                    celtypes.StringType(s): _to_cel(f"visits.{s}", INT, counts.get(s, 0))
                    for s in self.visits
                }
            )
        result = _ENV.program(self._ast).evaluate(activation)
        if isinstance(result, CELEvalError):
            raise GuardError(_reason(result))
        if not isinstance(result, celtypes.BoolType):
            raise GuardError(f"gave {result!r}, not true or false")
        return bool(result)


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # a value whose repr fails is still named
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 40 else text[:37] + "..."


def _reason(error: CELEvalError) -> str:
    return str(error.args[0]) if error.args else "cannot be evaluated"


def _number(tok: lark.Token) -> int | float | None:
    """The value of a numeric literal token (INT_LIT, UINT_LIT, FLOAT_LIT), else None."""
    text = str(tok)
    if tok.type == "FLOAT_LIT":
        return float(text)
    if tok.type in ("INT_LIT", "UINT_LIT"):
        digits = text.rstrip("uU")
        return int(digits, 16 if "x" in digits.lower() else 10)
    return None


def _literal_number(node: lark.Tree | lark.Token) -> int | float | None:
    """The number a subtree is when it is only a literal (in parentheses, negated), else
    None: ``0``, ``(0)``, ``-0.0`` are 0."""
    sign = 1
    while isinstance(node, lark.Tree):
        kids = [c for c in node.children if c is not None]
        if node.data == "unary" and len(kids) == 2 and getattr(kids[0], "data", "") == "unary_neg":
            sign, node = -sign, kids[1]
        elif node.data == "literal" and kids and isinstance(kids[0], lark.Token):
            value = _number(kids[0])
            return None if value is None else sign * value
        elif len(kids) == 1:
            node = kids[0]
        else:
            return None
    return None


def _measure(tree: lark.Tree) -> tuple[int, int]:
    """(depth, nodes) of a parse tree, without recursion."""
    depth = nodes = 0
    stack: list[tuple[Any, int]] = [(tree, 1)]
    while stack:
        node, level = stack.pop()
        nodes += 1
        depth = max(depth, level)
        if isinstance(node, lark.Tree):
            stack.extend((c, level + 1) for c in node.children if c is not None)
    return depth, nodes


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
        article = "an" if type_ == INT else "a"
        raise GuardError(f"{name}={_short(value)} is not {article} {type_}") from exc
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
    except (celpy.CELParseError, lark.exceptions.LarkError) as exc:
        return None, [
            GuardProblem(
                "the guard is not a valid CEL expression",
                int(getattr(exc, "column", 1) or 1),
                "check the operators (&&, ||, !, <, ==) and that parentheses and quotes match",
            )
        ]
    depth, nodes = _measure(ast)
    if nodes > MAX_GUARD_NODES:
        return None, [
            GuardProblem(
                f"the guard is too large: {nodes} parse-tree nodes (the limit is "
                f"{MAX_GUARD_NODES})",
                hint="split it over several branches or steps",
            )
        ]
    if depth > MAX_GUARD_DEPTH:
        return None, [
            GuardProblem(
                f"the guard is nested too deeply: its parse tree is {depth} levels deep "
                f"(the limit is {MAX_GUARD_DEPTH}, about 20 nested parentheses or calls)",
                hint="write it flatter, or split it over several branches or steps",
            )
        ]
    checker = _Checker({**BUILTINS, **names}, frozenset(steps))
    result = checker.infer(ast)
    if result not in (BOOL, ERROR):
        checker.problems.append(
            GuardProblem(f"a guard must be true or false, this one is {result}", 1)
        )
    if checker.problems:
        return None, checker.problems
    types = {n: checker.names[n] for n in checker.used}
    return Guard(text, frozenset(checker.used), frozenset(checker.visits), types, ast), []
