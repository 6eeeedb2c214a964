"""The contract lists every refusal code the engine can answer, and no other: the codes are
read from the code itself (every `Refused(...)`, every `check_text(...)` with the codes it
derives, every ApplicationError type a workflow raises), so neither side can drift."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import icr.domain.models as models

ROOT = Path(__file__).resolve().parents[2]
# Where refusals are made: every module of the engine's packages and the workflows.
SOURCES = [ROOT / "icr", ROOT / "workflows"]
CONTRACT = ROOT / "docs" / "contract.md"
SECTION = "## Refusal codes"


def _name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _literal(expr: ast.expr, where: str) -> str:
    """A code written as a string or as a constant of icr.domain.models."""
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return expr.value
    if isinstance(expr, ast.Name) and isinstance(getattr(models, expr.id, None), str):
        return str(getattr(models, expr.id))
    raise AssertionError(f"{where}: a refusal code this test cannot read ({ast.unparse(expr)}); "
                         "write it as a string or a constant of icr.domain.models")


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _check_text_codes(call: ast.Call, where: str) -> set[str]:
    """What `check_text(field, ...)` can refuse with: its `code`, or the three it derives."""
    code = _keyword(call, "code")
    if code is not None:
        return {_literal(code, where)}
    field = _literal(call.args[0], where)
    required = _keyword(call, "required")
    derived = {f"{field}_too_long", f"invalid_{field}"}
    if isinstance(required, ast.Constant) and required.value is True:
        derived.add(f"missing_{field}")
    return derived


def codes_in_code() -> set[str]:
    codes: set[str] = set()
    for source in SOURCES:
        for path in sorted(source.rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            # check_text builds its default codes from its field: counted at each call instead.
            inside_check_text = {id(n) for f in ast.walk(tree)
                                 if isinstance(f, ast.FunctionDef) and f.name == "check_text" for n in ast.walk(f)}
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                name = _name(node.func)
                if name == "Refused" and id(node) not in inside_check_text:
                    codes.add(_literal(node.args[0], where))
                elif name == "check_text" and node.args:
                    codes |= _check_text_codes(node, where)
                elif name == "ApplicationError" and source.name == "workflows":
                    kind = _keyword(node, "type")
                    # `type=refused.code` hands on a Refused, whose code is counted where it is made.
                    if kind is not None and not (isinstance(kind, ast.Attribute) and kind.attr == "code"):
                        codes.add(_literal(kind, where))
    return codes


def codes_in_contract() -> set[str]:
    text = CONTRACT.read_text(encoding="utf-8")
    assert SECTION in text, f"{CONTRACT.name} has no {SECTION!r} section"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    codes: set[str] = set()
    for line in section.splitlines():
        cells = line.split("|")
        if line.startswith("|") and len(cells) > 2 and not set(cells[1].strip()) <= set("-: "):
            codes |= set(re.findall(r"`([a-z_]+)`", cells[1]))
    return codes


def test_the_code_raises_codes_and_the_reader_finds_them() -> None:
    found = codes_in_code()
    assert {"no_open_notification", "stale_task", "invalid_data", "workflow_id_mismatch", "reason_too_long",
            "effective_too_early"} <= found


def test_the_contract_lists_exactly_the_refusal_codes_the_engine_can_answer() -> None:
    in_code, in_contract = codes_in_code(), codes_in_contract()
    assert in_code - in_contract == set(), f"refusal codes missing from {SECTION} in docs/contract.md"
    assert in_contract - in_code == set(), f"codes in {SECTION} of docs/contract.md that the engine never raises"
