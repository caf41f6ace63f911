"""Pydantic's validation errors as ONE :class:`~visionyard.errors.ContractError`: the first
problem, as a dotted field path and a readable sentence (used by ``parse_contract``)."""

from __future__ import annotations

from pydantic import ValidationError

from visionyard.errors import ContractError


class FieldProblem(ValueError):
    """A validator problem that belongs to a sub-field (``rel`` is relative to the model)."""

    def __init__(self, rel: str, problem: str) -> None:
        super().__init__(problem)
        self.rel = rel
        self.problem = problem


_PROBLEMS = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "missing": "required field is missing",
    "extra_forbidden": "unknown field (check the spelling)",
    "too_short": "must have at least {min_length} item(s)",
    "string_too_short": "must not be empty",
    "literal_error": "must be {expected}",
    "too_long": "must have at most {max_length} item(s)",
    "union_tag_invalid": "must be one of {expected_tags}",
    "union_tag_not_found": "required field is missing",
}


def first_problem(exc: ValidationError) -> ContractError:
    """Dotted path + readable problem for the first error pydantic reports."""
    error = exc.errors(include_url=False)[0]
    path = [str(part) for part in error["loc"] if not _is_union_tag(part)]
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, FieldProblem):
        return ContractError(".".join([*path, *cause.rel.split(".")]), cause.problem)
    if error["type"] == "json_invalid":
        return ContractError(
            "(json)", f"not valid JSON: {error['msg'].removeprefix('Invalid JSON: ')}"
        )
    if error["type"].startswith("union_tag"):
        path.append("kind")
    template = _PROBLEMS.get(error["type"])
    problem = template.format(**error.get("ctx", {})) if template else _plain(error["msg"])
    return ContractError(".".join(path) or "(contract)", problem)


def _is_union_tag(part: str | int) -> bool:
    return part in ("classification", "detection")


def _plain(message: str) -> str:
    text = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return text[:1].lower() + text[1:]
