"""Lark grammar text to the engine's plain representation: terminals with regexes, BNF rules."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from lark.exceptions import GrammarError as LarkGrammarError
from lark.exceptions import LarkError, UnexpectedInput
from lark.grammar import NonTerminal, Terminal
from lark.load_grammar import GrammarBuilder

from onrails.errors import GrammarError
from onrails.grammars.item_sets import ItemSet, parse_pragma


@dataclass(frozen=True)
class TerminalSpec:
    name: str
    regex: str  # Python regex syntax, flags inlined


@dataclass(frozen=True)
class RuleSpec:
    lhs: str
    rhs: tuple[str, ...]  # names; terminals are those in GrammarSpec.terminals


@dataclass(frozen=True)
class GrammarSpec:
    """A grammar after Lark's front end: EBNF expanded, imports resolved, templates applied;
    ``item_sets`` are list rules whose items the parser tracks (schema objects' members)."""

    terminals: tuple[TerminalSpec, ...]
    rules: tuple[RuleSpec, ...]
    ignore: tuple[str, ...]
    starts: tuple[str, ...]
    item_sets: tuple[ItemSet, ...] = ()


_WORD = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")
_LINE_RE = re.compile(r"line (\d+)", re.IGNORECASE)
_COL_RE = re.compile(r"col(?:umn)? (\d+)", re.IGNORECASE)
_RULE_RE = re.compile(r"(?:rule|terminal|symbol)s?:? ['\"]?([A-Za-z_][\w.]*)", re.IGNORECASE)


def _locate(text: str, name: str | None) -> tuple[int | None, int | None]:
    """Find the first line that mentions ``name`` (Lark's messages often lack a position)."""
    if not name:
        return None, None
    pattern = re.compile(rf"(?<![\w.]){re.escape(name)}(?![\w])")
    for lineno, line in enumerate(text.splitlines(), 1):
        code = line.split("//", 1)[0]
        m = pattern.search(code)
        if m:
            return lineno, m.start() + 1
    return None, None


def parse_lark(text: str, starts: list[str] | tuple[str, ...], source: str = "<grammar>") -> GrammarSpec:
    """Run Lark's grammar front end; every failure becomes a GrammarError with a position."""
    if not isinstance(text, str):
        raise GrammarError(f"grammar must be a str, not {type(text).__name__}")
    if not starts:
        raise GrammarError("no start rule given")
    try:
        builder = GrammarBuilder()
        builder.load_grammar(text, source)
        grammar = builder.build()
    except RecursionError as exc:
        raise GrammarError("grammar nests too deeply for Lark's grammar parser (Python's recursion limit)") from exc
    except UnexpectedInput as exc:
        raise GrammarError(
            f"grammar does not parse: {str(exc).splitlines()[0]}",
            line=getattr(exc, "line", None),
            column=getattr(exc, "column", None),
        ) from exc
    except (LarkGrammarError, LarkError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        m_line = _LINE_RE.search(str(exc))
        m_col = _COL_RE.search(str(exc))
        m_rule = _RULE_RE.search(str(exc))
        rule = m_rule.group(1) if m_rule else None
        line, col = (int(m_line.group(1)), int(m_col.group(1)) if m_col else None) if m_line else _locate(text, rule)
        raise GrammarError(f"invalid grammar: {message}", line=line, column=col, rule=rule) from exc

    try:
        terminals, rules, ignore = grammar.compile(list(starts), set())
    except (LarkGrammarError, LarkError) as exc:
        message = str(exc).strip().splitlines()[0]
        m_rule = _RULE_RE.search(str(exc))
        rule = m_rule.group(1) if m_rule else None
        line, col = _locate(text, rule)
        raise GrammarError(f"invalid grammar: {message}", line=line, column=col, rule=rule) from exc
    except KeyError as exc:
        name = str(exc.args[0]) if exc.args else "?"
        raise GrammarError(f"unknown start rule {name!r}", rule=name) from exc

    term_specs = []
    # Lark calls inline patterns __ANON_n; explanations and errors read better with the pattern.
    names: dict[str, str] = {}
    for term in terminals:
        try:
            regex = term.pattern.to_regexp()
        except Exception as exc:  # pattern objects raise their own types for odd flags
            raise GrammarError(f"cannot use terminal pattern: {exc}", rule=term.name) from exc
        name = str(term.name)
        if name.startswith("__ANON"):
            literal = term.pattern.value
            flags = "".join(sorted(term.pattern.flags))
            quoted = json.dumps(literal) if term.pattern.type == "str" else f"/{literal}/"
            names[name] = quoted + flags
        term_specs.append(TerminalSpec(name=names.get(name, name), regex=regex))
    term_names = {t.name for t in term_specs}
    rule_specs = []
    for rule in rules:
        rhs = []
        for sym in rule.expansion:
            if isinstance(sym, Terminal):
                if names.get(sym.name, sym.name) not in term_names:
                    line, col = _locate(text, sym.name)
                    raise GrammarError(
                        f"undefined terminal {sym.name!r}", line=line, column=col, rule=sym.name
                    )
                rhs.append(names.get(sym.name, str(sym.name)))
            elif isinstance(sym, NonTerminal):
                rhs.append(str(sym.name))
            else:  # pragma: no cover - Lark only produces these two symbol kinds
                raise GrammarError(f"unexpected symbol {sym!r}")
        rule_specs.append(RuleSpec(lhs=str(rule.origin.name), rhs=tuple(rhs)))
    return GrammarSpec(
        terminals=tuple(term_specs),
        rules=tuple(rule_specs),
        ignore=tuple(names.get(str(i), str(i)) for i in ignore),
        starts=tuple(starts),
        item_sets=_item_sets(text, {r.lhs for r in rule_specs}),
    )


def _item_sets(text: str, rules: "set[str]") -> tuple[ItemSet, ...]:
    """The tracked lists the text's ``// %items`` lines declare (see ``ItemSet``)."""
    found = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if "%items" not in line:
            continue
        try:
            item_set = parse_pragma(line)
        except ValueError as exc:
            raise GrammarError(str(exc), line=lineno) from exc
        if item_set is None or item_set.rule not in rules:
            continue  # a list Lark dropped as unreachable from the start rules
        for name in (*item_set.tracked, *item_set.untracked):
            if name not in rules:
                raise GrammarError(f"%items names {name!r}, which is not a rule", line=lineno, rule=name)
        found.append(item_set)
    return tuple(found)


def spec_from_rules(
    rules: "tuple[tuple[str, tuple[tuple[str, ...], ...]], ...]",
    terminals: "tuple[tuple[str, str], ...]",
    starts: "tuple[str, ...]",
    item_sets: "tuple[ItemSet, ...]" = (),
) -> GrammarSpec:
    """What ``parse_lark`` makes of plain rules and regex terminals printed as Lark text (as
    ``SchemaGrammar`` holds them), without printing and parsing them: a tenth of the time.
    Quoted symbols are literal strings, JSON-quoted."""
    named = {name for name, _ in terminals}
    literals: dict[str, TerminalSpec] = {}
    rule_specs = []
    for lhs, alternatives in rules:
        for alternative in dict.fromkeys(alternatives):  # Lark keeps one of repeated expansions
            rhs = []
            for symbol in alternative:
                if symbol.startswith('"'):
                    if symbol not in literals:
                        value = json.loads(symbol)
                        # Lark names a word literal after it ("true" is TRUE), others by their text.
                        name = value.upper() if _WORD.fullmatch(value) and value.upper() not in named else symbol
                        literals[symbol] = TerminalSpec(name=name, regex=re.escape(value))
                    symbol = literals[symbol].name
                rhs.append(symbol)
            rule_specs.append(RuleSpec(lhs=lhs, rhs=tuple(rhs)))
    return GrammarSpec(
        terminals=tuple(TerminalSpec(name=n, regex=r) for n, r in terminals) + tuple(literals.values()),
        rules=tuple(rule_specs),
        ignore=(),
        starts=starts,
        item_sets=item_sets,
    )


def without_terminals(spec: GrammarSpec, names: "set[str]") -> GrammarSpec:
    """``spec`` without the terminals ``names`` (whose languages turned out empty), the
    alternatives using them, and the rules left deriving nothing. Raises GrammarError when a
    start rule derives nothing."""
    terminals = {t.name for t in spec.terminals} - names
    productive: set[str] = set()
    changed = True
    while changed:
        changed = False
        for rule in spec.rules:
            if rule.lhs not in productive and all(s in productive or s in terminals for s in rule.rhs):
                productive.add(rule.lhs)
                changed = True
    dead = [s for s in spec.starts if s not in productive]
    if dead:
        raise GrammarError(f"rule {dead[0]!r} derives nothing (a terminal of it matches nothing)", rule=dead[0])
    return GrammarSpec(
        terminals=tuple(t for t in spec.terminals if t.name not in names),
        rules=tuple(r for r in spec.rules if all(s in productive or s in terminals for s in r.rhs)),
        ignore=tuple(i for i in spec.ignore if i not in names),
        starts=spec.starts,
        item_sets=spec.item_sets,
    )
