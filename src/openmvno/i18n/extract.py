"""Find every user-facing message in the code and templates, and report those
missing from the zh_CN catalog: ``python -m openmvno.i18n.extract``.

Messages are: the 2nd argument of ``translate(lang, msg)`` and of a DomainError
(``NotFound("code", "msg")``), the 1st of ``t("msg")`` / ``_t("msg")`` in Python and templates.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

from openmvno.i18n import _catalog

PACKAGE = Path(__file__).resolve().parent.parent
ERRORS = {
    "DomainError", "InvalidInput", "Unauthorized", "Forbidden", "NotFound", "Conflict",
    "PaymentRequired", "TooManyAttempts",
}
CODE = re.compile(r"[a-z][a-z0-9_]+")
TEMPLATE_CALL = re.compile(r"""\bt\(\s*(["'])(.+?)(?<!\\)\1""", re.S)


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _looks_like_error(name: str, args: list[ast.expr]) -> bool:
    """``SomeError("stable_code", "Message.")``: a DomainError subclass defined anywhere."""
    if not name[:1].isupper() or len(args) < 2:
        return False
    code, message = args[0], args[1]
    return (
        isinstance(code, ast.Constant)
        and isinstance(code.value, str)
        and CODE.fullmatch(code.value) is not None
        and isinstance(message, ast.Constant)
        and isinstance(message.value, str)
        and " " in message.value
        and message.value.rstrip()[-1:] in ".?!"
    )


def python_messages(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        name = _name(node.func)
        index = {"translate": 1, "t": 0, "_t": 0, "N_": 0}.get(
            name, 1 if name in ERRORS or _looks_like_error(name, node.args) else -1
        )
        if index < 0 or len(node.args) <= index:
            continue
        arg = node.args[index]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            found.add(arg.value)
    return found


def template_messages(path: Path) -> set[str]:
    return {m.group(2) for m in TEMPLATE_CALL.finditer(path.read_text())}


def all_messages() -> set[str]:
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        found |= python_messages(path)
    for path in PACKAGE.rglob("*.html"):
        found |= template_messages(path)
    return found


def missing() -> list[str]:
    catalog = _catalog("zh-CN")
    return sorted(m for m in all_messages() if m not in catalog)


if __name__ == "__main__":
    gaps = missing()
    for m in gaps:
        print(f'msgid "{m}"\nmsgstr ""\n')
    sys.exit(1 if gaps else 0)
