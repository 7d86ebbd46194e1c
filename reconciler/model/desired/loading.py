"""Loading a desired-state file into models, with every problem named by file, line and field.

`load(path)` reads the YAML (see `reconciler.yamlsource`), validates it with pydantic and then
with the cross-field rules of `reconciler.model.desired.checks`, and raises one `SpecError`
listing *every* problem as `file:line:col: field.path: message`, so one run of `validate`
shows all that is wrong rather than the first thing. Pydantic's messages are reworded for a
person editing YAML ("unknown field", "must be a number"), not for a Python programmer.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from reconciler.errors import SpecError
from reconciler.model.desired.checks import semantic_problems
from reconciler.model.desired.fields import ENV_NAME_PATTERN
from reconciler.model.desired.state import DesiredState, format_path
from reconciler.yamlsource import PathKey, SourceDocument, YamlProblem, load_text, load_yaml

__all__ = ["from_source", "load", "loads"]


def load(path: str | Path) -> DesiredState:
    """Read, parse and validate a desired-state file; `SpecError` lists every problem."""
    try:
        source = load_yaml(path)
    except YamlProblem as problem:
        raise SpecError([_yaml_problem_text(str(path), problem)]) from None
    return from_source(source)


def loads(text: str, filename: str = "<string>") -> DesiredState:
    """Like `load`, from text (tests and stdin)."""
    try:
        source = load_text(text, filename)
    except YamlProblem as problem:
        raise SpecError([_yaml_problem_text(filename, problem)]) from None
    return from_source(source)


def from_source(source: SourceDocument) -> DesiredState:
    """Validate a parsed document; the state keeps it, so later checks can name lines."""
    if not isinstance(source.data, dict):
        kind = type(source.data).__name__ if source.data is not None else "nothing"
        line, column = source.where(())
        raise SpecError(
            [f"{source.filename}:{line}:{column}: (document): must be a mapping, not {kind}"]
        )
    try:
        desired = DesiredState.model_validate(source.data)
    except ValidationError as error:
        raise SpecError(_pydantic_problems(source, error)) from None
    desired.attach_source(source)
    problems = semantic_problems(desired)
    if problems:
        raise SpecError(problems)
    return desired


def _yaml_problem_text(filename: str, problem: YamlProblem) -> str:
    where = filename
    if problem.location is not None:
        where = f"{filename}:{problem.location[0]}:{problem.location[1]}"
    return f"{where}: {format_path(problem.path)}: {problem.message}"


_MESSAGES: dict[str, str] = {
    "extra_forbidden": "unknown field",
    "missing": "required field is missing",
    "literal_error": "must be {expected}",
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
    "string_type": "must be text",
    "bool_type": "must be true or false",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "tuple_type": "must be a list",
    "string_pattern_mismatch": "must look like BASE_QUOTE in capitals, e.g. BTC_USDT",
    "string_too_short": "must not be empty",
}


def _pydantic_problems(source: SourceDocument, error: ValidationError) -> list[str]:
    problems: list[str] = []
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        kind = item["type"]
        # A dict key that failed its own validation appears as `[key-name, "[key]"]`.
        on_key = kind == "extra_forbidden" or (bool(loc) and loc[-1] == "[key]")
        if loc and loc[-1] == "[key]":
            loc = loc[:-1]
        path: PathKey = tuple(part for part in loc if isinstance(part, str | int))
        template = _MESSAGES.get(kind)
        context = item.get("ctx") or {}
        if kind == "string_pattern_mismatch" and context.get("pattern") == ENV_NAME_PATTERN:
            template = "must be the name of an environment variable, e.g. RECONCILER_LOCK_DSN"
        if template is not None:
            message = template.format(**{key: str(value) for key, value in context.items()})
        elif kind == "value_error":
            message = str(context.get("error", item["msg"]))
        else:
            message = item["msg"][:1].lower() + item["msg"][1:]
        line, column = source.where(path, key=on_key)
        problems.append(f"{source.filename}:{line}:{column}: {format_path(path)}: {message}")
    return problems
