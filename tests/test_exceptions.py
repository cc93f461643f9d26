"""One exception tree: every musewise error is a MusewiseError and a builtin, defined in musewise.exceptions."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import musewise
from musewise import exceptions

PACKAGE = Path(musewise.__file__).parent

#: Classes still defined in modules being rewritten; their owners move them here.
PENDING: set = set()

ERRORS = [c for _, c in inspect.getmembers(exceptions, inspect.isclass)
          if issubclass(c, BaseException) and c.__module__ == exceptions.__name__]


@pytest.mark.parametrize("cls", [c for c in ERRORS if c is not exceptions.MusewiseError], ids=lambda c: c.__name__)
def test_each_error_is_a_musewise_error_and_a_builtin(cls):
    assert issubclass(cls, exceptions.MusewiseError)
    builtins = [b for b in cls.__mro__ if b.__module__ == "builtins" and b not in (Exception, BaseException, object)]
    assert builtins, f"{cls.__name__} also needs a builtin base (ValueError, LookupError...)"
    assert cls.__doc__ and cls.__doc__ != exceptions.MusewiseError.__doc__
    assert cls.__name__ in exceptions.__doc__, "listed in the tree of the module docstring"


def test_no_exception_class_is_defined_elsewhere():
    found = set()
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel == "exceptions.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                    (getattr(b, "id", None) or getattr(b, "attr", "")).endswith(("Error", "Exception", "Failed"))
                    for b in node.bases):
                found.add((rel, node.name))
    assert found <= PENDING, f"define these in musewise/exceptions.py: {sorted(found - PENDING)}"
