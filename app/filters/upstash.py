"""Upstash metadata filter text → filter AST: a tokenizer and a recursive-descent parser.

Grammar (Upstash docs, `vector/features/filtering`); AND binds tighter than OR:

    filter    := or_expr
    or_expr   := and_expr ( OR and_expr )*
    and_expr  := primary ( AND primary )*
    primary   := '(' or_expr ')' | predicate
    predicate := ident ('=' | '!=') literal
               | ident ('<' | '<=' | '>' | '>=') number
               | ident [NOT] GLOB string
               | ident [NOT] IN '(' literal (',' literal)* ')'
               | ident [NOT] CONTAINS literal
               | HAS FIELD ident | HAS NOT FIELD ident

Decisions on what the docs leave open:

- Keywords (`AND`, `OR`, `NOT`, `GLOB`, `IN`, `CONTAINS`, `HAS`, `FIELD`) and `true` / `false`
  are case-insensitive. `1` and `0` are numbers, and since equality takes booleans as 1 and 0
  (`Typing.LOOSE`), `flag = 1` matches `true` and `count = true` matches `1`.
- A missing key, a null, or a value of another type fails *every* operator, including `!=`,
  `NOT GLOB`, `NOT IN` and `NOT CONTAINS` (the docs filter "keys whose values ..."). Only
  `HAS NOT FIELD` matches a missing key. `NOT IN (a, b)` is `!= a AND != b`, as documented.
- `<`, `<=`, `>`, `>=` compare numbers only; booleans are not numbers there.
- Strings are quoted with `'` or `"`; inside, `\\`, `\\'` and `\\"` stand for `\\`, `'` and `"`;
  any other backslash is kept as it is (so GLOB patterns need no double escaping).
- Numbers: an optional `-`, digits with an optional fraction (`1.`, `.5`), an optional
  exponent (`1e-3`). Without fraction or exponent they are integers; non-finite ones are refused.
- `NOT` only forms `NOT GLOB`, `NOT IN` and `NOT CONTAINS`; it cannot prefix a group or a
  predicate, which the docs do not document (write `!=`, `NOT IN` or `HAS NOT FIELD`).
- Paths: `a.b.c`, `a[0]`, `a[#-1]` (last element; `#-n` counts from the end, n >= 1). Arrays
  are not searched implicitly: use CONTAINS.
- GLOB is case-sensitive: `*`, `?`, `[abc]`, `[a-z]`, `[^abc]`; a malformed class is an error.
- Positions in error messages are 0-based character offsets into the filter text.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from app import limits
from app.errors import BadRequest, NulCharacter
from app.filters import ast
from app.filters.ast import And, Index, Key, Node, Path, Scalar, Typing
from app.filters.semantics import glob_to_regex

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_.\[\]\#-]*)
  | (?P<op><=|>=|!=|[=<>])
  | (?P<punct>[(),])
  | (?P<quote>['"])
    """,
    re.VERBOSE,
)
_SEGMENT = re.compile(r"([A-Za-z0-9_#-]+)((?:\[[^\]]*\])*)")
_BRACKET = re.compile(r"\[(\d+|#-\d+)\]")


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # number, word, op, punct, string, end
    text: str  # as written
    position: int
    value: Scalar | None = None

    def is_word(self, *words: str) -> bool:
        """A case-insensitive keyword check; keywords are words, so fields may share names."""
        return self.kind == "word" and self.text.lower() in words


def parse_upstash_filter(text: str) -> Node | None:
    """The AST of an Upstash `filter` string; None for an empty (or all-blank) filter."""
    if "\x00" in text:  # rejected whether it would be evaluated in memory or in SQL
        raise NulCharacter("the filter")
    tokens = tokenize(text)
    if tokens[0].kind == "end":
        return None
    return _Parser(tokens).parse()


def _fail(problem: str, position: int) -> BadRequest:
    return BadRequest(f"Invalid filter: {problem} at position {position}")


# --- tokenizer ---------------------------------------------------------------------------------


def tokenize(text: str) -> list[Token]:
    """Tokens up to and including an `end` token."""
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise _fail(f"unexpected character {text[position]!r}", position)
        kind = match.lastgroup or ""
        if kind == "quote":
            token, position = _string(text, position)
            tokens.append(token)
            continue
        if kind != "space":
            tokens.append(_token(kind, match.group(), position))
        position = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


def _token(kind: str, text: str, position: int) -> Token:
    if kind == "number":
        return Token("number", text, position, _number(text, position))
    return Token(kind, text, position)


_I64 = 2**63


def _number(text: str, position: int) -> int | float:
    if re.fullmatch(r"-?\d+", text):
        # Checked by length first: Python refuses to read an integer of over 4300 digits.
        if len(text.lstrip("-")) > 19 or not -_I64 <= int(text) < _I64:
            raise _fail(f"integer {_clip(text)} is out of the 64-bit range", position)
        return int(text)
    value = float(text)
    if not math.isfinite(value):
        raise _fail(f"number {text} is out of range", position)
    return value


def _string(text: str, start: int) -> tuple[Token, int]:
    quote = text[start]
    chars: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == quote:
            return Token("string", text[start : i + 1], start, "".join(chars)), i + 1
        if char == "\\" and i + 1 < len(text) and text[i + 1] in ("\\", "'", '"'):
            i += 1
            char = text[i]
        chars.append(char)
        i += 1
    raise _fail("unterminated string", start)


# --- parser ------------------------------------------------------------------------------------


class _Parser:
    """Recursive descent over the token list; one method per grammar rule."""

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.at = 0
        self.limits = limits.current()
        self.depth = 0  # parentheses open at the current token
        self.conditions = 0

    def parse(self) -> Node:
        node = self.or_expr()
        token = self.peek()
        if token.kind != "end":
            expected = "AND, OR or ')'" if token.text == ")" else "AND or OR"
            raise _fail(f"expected {expected}, found {_show(token)}", token.position)
        return node

    def or_expr(self) -> Node:
        children = [self.and_expr()]
        while self.accept_word("or"):
            children.append(self.and_expr())
        return ast.either(children)

    def and_expr(self) -> Node:
        children = [self.primary()]
        while self.accept_word("and"):
            children.append(self.primary())
        return children[0] if len(children) == 1 else And(tuple(children))

    def primary(self) -> Node:
        token = self.peek()
        if token.text == "(" and token.kind == "punct":
            return self.group(token)
        after = self.tokens[min(self.at + 1, len(self.tokens) - 1)]
        if token.is_word("has") and after.is_word("field", "not"):
            return self.has_field()
        if token.is_word("not") and after.kind != "op":
            raise _fail(
                "NOT can only be used in NOT GLOB, NOT IN and NOT CONTAINS; "
                "expected a field name, '(' or HAS",
                token.position,
            )
        return self.predicate()

    def group(self, opening: Token) -> Node:
        self.depth += 1
        if self.depth > self.limits.filter_depth:
            raise _fail(
                f"parentheses nest more than {self.limits.filter_depth} levels deep "
                "(WAYPOINT_MAX_FILTER_DEPTH)",
                opening.position,
            )
        self.at += 1
        node = self.or_expr()
        self.expect_punct(")", f"')' to close the '(' at position {opening.position}")
        self.depth -= 1
        return node

    def counted(self, position: int) -> None:
        """One more condition; past the limit the filter is refused where it overflows."""
        self.conditions += 1
        if self.conditions > self.limits.filter_conditions:
            raise _fail(
                f"more than {self.limits.filter_conditions} conditions "
                "(WAYPOINT_MAX_FILTER_CONDITIONS)",
                position,
            )

    def has_field(self) -> Node:
        self.counted(self.peek().position)
        self.at += 1
        negated = self.accept_word("not")
        if not self.accept_word("field"):
            after = "HAS NOT" if negated else "HAS"
            raise _fail(f"expected FIELD after {after}", self.peek().position)
        exists = ast.Exists(self.path())
        return ast.Not(exists) if negated else exists

    def predicate(self) -> Node:
        self.counted(self.peek().position)
        path = self.path()
        token = self.peek()
        if token.kind == "op":
            self.at += 1
            return self.comparison(path, token)
        negated = self.accept_word("not")
        operator = self.peek()
        self.at += 1
        if operator.is_word("glob"):
            return ast.Glob(path, self.glob_pattern(), negated)
        if operator.is_word("in"):
            return self.in_list(path, negated)
        if operator.is_word("contains"):
            literal = self.literal(f"after {'NOT ' * negated}CONTAINS")
            return ast.Contains(path, literal, negated)
        expected = "GLOB, IN or CONTAINS" if negated else "an operator"
        raise _fail(
            f"expected {expected} after '{path}', found {_show(operator)}", operator.position
        )

    def comparison(self, path: Path, operator: Token) -> Node:
        if operator.text in ("=", "!="):
            literal = self.literal(f"after '{operator.text}'")
            if operator.text == "=":
                return ast.Equals(path, literal, Typing.LOOSE)
            return ast.Differs(path, literal)
        token = self.peek()
        if token.kind != "number":
            raise _fail(f"expected a number after '{operator.text}'", token.position)
        self.at += 1
        bound = {"<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}[operator.text]
        return ast.Range(path, **{bound: token.value})

    def glob_pattern(self) -> str:
        token = self.peek()
        if token.kind != "string":
            raise _fail("expected a quoted pattern after GLOB", token.position)
        self.at += 1
        assert isinstance(token.value, str)
        try:
            glob_to_regex(token.value)
        except ValueError as error:
            raise _fail(f"invalid GLOB pattern ({error})", token.position) from None
        return token.value

    def in_list(self, path: Path, negated: bool) -> Node:
        keyword = "NOT IN" if negated else "IN"
        self.expect_punct("(", f"'(' after {keyword}")
        literals = [self.literal(f"in the {keyword} list")]
        while self.accept_punct(","):
            literals.append(self.literal(f"after ',' in the {keyword} list"))
        self.expect_punct(")", f"',' or ')' in the {keyword} list")
        if negated:
            return And(tuple(ast.Differs(path, literal) for literal in literals))
        return ast.AnyOf(path, tuple(literals), Typing.LOOSE)

    def literal(self, where: str) -> Scalar:
        token = self.peek()
        if token.is_word("true", "false"):
            self.at += 1
            return token.text.lower() == "true"
        if token.kind not in ("string", "number"):
            raise _fail(f"expected a value {where}", token.position)
        self.at += 1
        assert token.value is not None
        return token.value

    def path(self) -> Path:
        token = self.peek()
        if token.kind != "word":
            raise _fail(f"expected a field name, found {_show(token)}", token.position)
        self.at += 1
        return parse_path(token.text, token.position)

    # -- token helpers

    def peek(self) -> Token:
        return self.tokens[self.at]

    def accept_word(self, word: str) -> bool:
        token = self.peek()
        if token.is_word(word):
            self.at += 1
            return True
        return False

    def accept_punct(self, char: str) -> bool:
        token = self.peek()
        if token.kind == "punct" and token.text == char:
            self.at += 1
            return True
        return False

    def expect_punct(self, char: str, expected: str) -> None:
        if not self.accept_punct(char):
            token = self.peek()
            raise _fail(f"expected {expected}, found {_show(token)}", token.position)


def _clip(text: str) -> str:
    return text if len(text) <= 24 else f"{text[:20]}... ({len(text)} characters)"


def _show(token: Token) -> str:
    return "the end of the filter" if token.kind == "end" else f"'{token.text}'"


def parse_path(text: str, position: int = 0) -> Path:
    """`a.b[0].c[#-1]` as a non-flattening path; errors point into the filter text."""
    steps: list[ast.Step] = []
    offset = 0
    for segment in text.split("."):
        match = _SEGMENT.fullmatch(segment)
        if match is None:
            raise _fail(f"invalid field name '{text}'", position + offset)
        steps.append(Key(match.group(1)))
        for bracket in re.findall(r"\[[^\]]*\]", match.group(2)):
            steps.append(_index(bracket, text, position))
        offset += len(segment) + 1
    return Path(tuple(steps), flatten=False)


def _index(bracket: str, text: str, position: int) -> Index:
    match = _BRACKET.fullmatch(bracket)
    if match is None:
        raise _fail(f"invalid array index {bracket} in '{text}'", position)
    inside = match.group(1)
    if len(inside) > 20:
        raise _fail(f"array index {_clip(bracket)} is out of range in '{_clip(text)}'", position)
    if inside.startswith("#-"):
        back = int(inside[2:])
        if back == 0:
            raise _fail(f"invalid array index {bracket} in '{text}' ([#-1] is the last)", position)
        return Index(-back)
    return Index(int(inside))
