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


#: Builtins musewise may raise bare: an abstract method's NotImplementedError (the
#: base class says what to override) and the AttributeError of a module's __getattr__
#: (Python's protocol for lazy attributes).
ALLOWED_BARE = {"NotImplementedError": None, "AttributeError": "__getattr__"}


def _bare_raises(tree):
    """(line, builtin name, enclosing function) of each ``raise <builtin>(...)`` in a module."""
    import builtins

    found = []

    def visit(node, func):
        for child in ast.iter_child_nodes(node):
            name = func
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = child.name
            if isinstance(child, ast.Raise) and child.exc is not None:
                exc = child.exc.func if isinstance(child.exc, ast.Call) else child.exc
                cls = getattr(builtins, getattr(exc, "id", ""), None)
                if isinstance(exc, ast.Name) and isinstance(cls, type) and issubclass(cls, BaseException):
                    found.append((child.lineno, exc.id, func))
            visit(child, name)

    visit(tree, None)
    return found


def test_no_bare_builtin_is_raised_anywhere_in_musewise():
    bare = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        for line, name, func in _bare_raises(ast.parse(path.read_text())):
            if name in ALLOWED_BARE and ALLOWED_BARE[name] in (None, func):
                continue
            bare.append(f"{rel}:{line} raise {name}")
    assert not bare, "raise an error of musewise.exceptions (it subclasses the builtin too): " + ", ".join(bare)


def test_the_bare_raise_check_finds_one():
    tree = ast.parse("def f(x):\n    if x:\n        raise ValueError('no')\n    raise KeyError\n"
                     "def __getattr__(name):\n    raise AttributeError(name)\n")
    assert _bare_raises(tree) == [(3, "ValueError", "f"), (4, "KeyError", "f"), (6, "AttributeError", "__getattr__")]

