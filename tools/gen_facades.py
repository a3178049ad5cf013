"""Generate the delegation methods of the async and the sync client from the contracts.

Every public method of a tier contract (``async_db_client/tiers/{remote,core,pipeline}.py``)
is also a method of the async client (``async_db_client/client.py``, ``DBInstance``), and
every public method of the async client is also one of the blocking client
(``async_db_client/sync.py``, ``DBInstance``). Their signatures, return types and
one-line docstrings are copied here, between the markers in each file, so they never
drift and IDEs see real methods::

    python tools/gen_facades.py           # rewrite the generated sections
    python tools/gen_facades.py --check   # exit 1 if they are stale (``make lint``)

The model types in the copied signatures are written ``models.HashRecord``: each facade
imports ``models`` once, and a contract method with a new model type needs no import
added by hand in either facade.

Adding a method to a tier: write it in the contract, implement the store primitive (and
its SQL in the dialects), run this. Reads the sources with :mod:`ast` (nothing is
imported), like psycopg's ``tools/async_to_sync.py``.
"""

from __future__ import annotations

import argparse
import ast
import functools
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "async_db_client"
CLIENT = PACKAGE / "client.py"
SYNC = PACKAGE / "sync.py"
MODELS = PACKAGE / "models.py"
#: The contracts, in the order their methods appear on the clients.
TIERS = (
    ("remote", "tiers/remote.py", "RemoteRepository"),
    ("core", "tiers/core.py", "CoreRepository"),
    ("pipeline", "tiers/pipeline.py", "PipelineRepository"),
)
#: Methods of the async client the sync facade writes by hand (lifecycle, transactions).
SYNC_HAND_WRITTEN = frozenset({"aclose", "transaction", "pool_stats"})
END = "    # --- end of generated code ---"
WIDTH = 100


@dataclass(frozen=True)
class Method:
    """One public method, as written in its source."""

    name: str
    is_async: bool
    is_generator: bool
    params: list[str]  # "name: annotation = default", after self; "*" marks keyword-only
    call_args: list[str]  # how to pass them on: "name" or "name=name"
    iterable_args: frozenset[str]  # parameters annotated Iterable[...]
    returns: str
    summary: str


def methods_of(source: str, class_name: str) -> list[Method]:
    """The public methods defined in class ``class_name`` of ``source``, in order."""
    tree = ast.parse(source)
    cls = next(
        node
        for node in tree.body
        if isinstance(node, ast.ClassDef) and node.name == class_name
    )
    found = []
    for node in cls.body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if node.name.startswith("_") or any(_is_property(d) for d in node.decorator_list):
            continue
        found.append(_method(node, source))
    return found


def _is_property(decorator: ast.expr) -> bool:
    return isinstance(decorator, ast.Name) and decorator.id == "property"


def _method(node: ast.FunctionDef | ast.AsyncFunctionDef, source: str) -> Method:
    def text(expr: ast.expr | None) -> str:
        assert expr is not None, f"{node.name}: every parameter needs an annotation"
        segment = ast.get_source_segment(source, expr)
        assert segment is not None
        return _qualified(segment)

    args = node.args
    assert not (args.posonlyargs or args.vararg or args.kwarg), f"{node.name}: plain params only"
    positional = args.args[1:]  # after self
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults))
    defaults += args.defaults
    params, call_args, iterables = [], [], set()
    for arg, default in zip(positional, defaults, strict=True):
        params.append(_param(arg.arg, text(arg.annotation), default and text(default)))
        call_args.append(arg.arg)
    if args.kwonlyargs:
        params.append("*")
    for arg, kw_default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        params.append(_param(arg.arg, text(arg.annotation), kw_default and text(kw_default)))
        call_args.append(f"{arg.arg}={arg.arg}")
    for arg in positional + args.kwonlyargs:
        if text(arg.annotation).startswith("Iterable["):
            iterables.add(arg.arg)
    docstring = ast.get_docstring(node)
    assert docstring, f"{node.name}: a public method needs a docstring"
    summary = " ".join(docstring.split("\n\n")[0].split())
    return Method(
        name=node.name,
        is_async=isinstance(node, ast.AsyncFunctionDef),
        is_generator=any(isinstance(n, ast.Yield | ast.YieldFrom) for n in ast.walk(node)),
        params=params,
        call_args=call_args,
        iterable_args=frozenset(iterables),
        returns=text(node.returns),
        summary=summary,
    )


@functools.cache
def _model_names() -> frozenset[str]:
    """The names of ``models.__all__``."""
    tree = ast.parse(MODELS.read_text(encoding="utf-8"))
    return frozenset(
        next(
            ast.literal_eval(node.value)
            for node in tree.body
            if isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
        )
    )


def _qualified(expression: str) -> str:
    """``expression`` (an annotation or a default) with each name of :mod:`models`
    written ``models.Name`` (those already qualified, and strings, left alone)."""
    lines = expression.split("\n")
    names = [
        node
        for node in ast.walk(ast.parse(f"({expression})", mode="eval"))
        if isinstance(node, ast.Name) and node.id in _model_names()
    ]
    # From the last: an insertion leaves the positions before it as they were.
    for node in sorted(names, key=lambda node: (node.lineno, node.col_offset), reverse=True):
        line = lines[node.lineno - 1].encode()  # ast's offsets count UTF-8 bytes
        column = node.col_offset - (1 if node.lineno == 1 else 0)  # after the added "("
        lines[node.lineno - 1] = f"{line[:column].decode()}models.{line[column:].decode()}"
    return "\n".join(lines)


def _param(name: str, annotation: str, default: str | None) -> str:
    return f"{name}: {annotation}" + ("" if default is None else f" = {default}")


# ---------------------------------------------------------------------------- rendering


def _packed(head: str, items: list[str], tail: str, indent: int) -> list[str]:
    """``head + ", ".join(items) + tail`` on one line if it fits; else the items on
    continuation lines (as few as fit) between ``head`` and ``tail``."""
    pad = " " * indent
    one = f"{pad}{head}{', '.join(items)}{tail}"
    if len(one) <= WIDTH:
        return [one]
    inner = " " * (indent + 4)
    lines, current = [], ""
    for item in items:
        candidate = f"{current}, {item}" if current else item
        if current and len(inner) + len(candidate) + 1 > WIDTH:
            lines.append(f"{inner}{current},")
            current = item
        else:
            current = candidate
    lines.append(f"{inner}{current}")
    return [f"{pad}{head}", *lines, f"{pad}{tail}"]


def _docstring(summary: str, indent: int = 8) -> list[str]:
    pad = " " * indent
    one = f'{pad}"""{summary}"""'
    if len(one) <= WIDTH:
        return [one]
    wrapped = textwrap.wrap(summary, WIDTH - indent - 3)
    wrapped[0] = '"""' + wrapped[0]
    wrapped[-1] += '"""'
    return [pad + line for line in wrapped]


def _render(
    method: Method, *, is_async: bool, returns: str, target: str, args: list[str], wait: str
) -> list[str]:
    keyword = "async def" if is_async else "def"
    lines = _packed(f"{keyword} {method.name}(", ["self", *method.params], f") -> {returns}:", 4)
    lines += _docstring(method.summary)
    lead = "" if returns == "None" else "return "
    lines += _packed(f"{lead}{wait}{target}(", args, ")", 8)
    return lines


def client_section() -> list[str]:
    """The async client's delegations to the tier contracts."""
    lines: list[str] = []
    for tier, module, class_name in TIERS:
        lines += [f"    # {'-' * 69} {tier}", ""]
        for method in methods_of((PACKAGE / module).read_text(encoding="utf-8"), class_name):
            target = f"self._{tier}().{method.name}"
            if method.is_generator:  # an async iterator: handed back, not awaited
                lines += _render(method, is_async=False, returns=method.returns, target=target,
                                 args=method.call_args, wait="")
            else:
                lines += _render(method, is_async=True, returns=method.returns, target=target,
                                 args=method.call_args, wait="await ")
            lines.append("")
    return lines[:-1]


def sync_section(client_source: str) -> list[str]:
    """The sync facade's methods, one per public method of the async client."""
    lines: list[str] = []
    for method in methods_of(client_source, "DBInstance"):
        if method.name in SYNC_HAND_WRITTEN:
            continue
        args = [f"_in_caller({a})" if a in method.iterable_args else a for a in method.call_args]
        if method.is_async:
            lines += _render(method, is_async=False, returns=method.returns, wait="",
                             target="self._call", args=[f"AsyncDBInstance.{method.name}", *args])
        elif method.returns.startswith("AsyncIterator["):
            returns = method.returns.replace("AsyncIterator[", "Iterator[", 1)
            lines += _render(method, is_async=False, returns=returns, wait="",
                             target="self._iterate",
                             args=[f"AsyncDBInstance.{method.name}", *args])
        else:  # a plain method of the async client, safe to call from any thread
            lines += _render(method, is_async=False, returns=method.returns, wait="",
                             target=f"self.async_client.{method.name}", args=args)
        lines.append("")
    return lines[:-1]


# ------------------------------------------------------------------------------ files


def replace_section(source: str, body: list[str], path: Path) -> str:
    """``source`` with the lines between its generated-code markers replaced by ``body``."""
    lines = source.split("\n")
    start = next(
        (n for n, line in enumerate(lines) if line.startswith("    # --- generated by")), None
    )
    end = next((n for n, line in enumerate(lines) if line == END), None)
    if start is None or end is None or end < start:
        raise SystemExit(f"{path}: the generated-code markers are missing")
    return "\n".join(lines[: start + 1] + body + lines[end:])


def generate() -> dict[Path, str]:
    """The new text of each generated file."""
    client = replace_section(CLIENT.read_text(encoding="utf-8"), client_section(), CLIENT)
    sync = replace_section(SYNC.read_text(encoding="utf-8"), sync_section(client), SYNC)
    return {CLIENT: client, SYNC: sync}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is stale")
    options = parser.parse_args()
    stale = []
    for path, text in generate().items():
        if path.read_text(encoding="utf-8") != text:
            stale.append(path)
            if not options.check:
                path.write_text(text, encoding="utf-8")
    if options.check and stale:
        names = ", ".join(str(p.relative_to(ROOT)) for p in stale)
        print(f"stale generated code in {names}: run python tools/gen_facades.py")
        return 1
    if not options.check:
        print("rewrote " + (", ".join(str(p.relative_to(ROOT)) for p in stale) or "nothing"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
