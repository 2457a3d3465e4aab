"""`UserError`: a mistake in what the user gave (a path, a flag, a file's content).

`tad` (``tadllm.cli.main``) prints a user error as one line, ``tad CMD: error: MESSAGE``, and exits with
status 2; ``tad --debug CMD ...`` shows the traceback instead. The same one-line treatment is given to the
exceptions that the library raises for bad input with a message that says what to fix (``ValueError``,
``FileNotFoundError`` and the other "this path is wrong" errors, a YAML syntax error); anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input: the message names what to fix."""


def user_error_types() -> tuple[type[BaseException], ...]:
    """The exception types that `tad` reports as one line."""
    types: list[type[BaseException]] = [UserError, ValueError, FileNotFoundError, NotADirectoryError,
                                        IsADirectoryError, PermissionError, FileExistsError]
    try:
        import yaml

        types.append(yaml.YAMLError)
    except ImportError:  # pragma: no cover - pyyaml is a core dependency
        pass
    return tuple(types)


def one_line(err: BaseException) -> str:
    """The message of `err` on one line (a YAML error's location lines joined with '; ')."""
    text = str(err).strip() or type(err).__name__
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())
