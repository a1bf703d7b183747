"""The one way every ``ssn-*`` command starts, reports and exits.

Each command's ``main(argv=None)`` builds its parser with :func:`command_parser`
and hands its body to :func:`run_command`, which parses the arguments, sets up
logging and turns what the body does into the exit status:

=====  ===========================================================================
0      done (a body may also return its own status, e.g. 1 when some items failed)
1      a runtime failure: one line ``ssn-X: error: ...`` on stderr
2      bad usage or input: argparse's own usage error, or a ValueError (a bad
       value, file content or setting), a missing, misplaced or forbidden file or
       folder (FileNotFoundError, NotADirectoryError, IsADirectoryError,
       PermissionError, FileExistsError), a :class:`UsageError`, or one of the
       command's own ``input_errors``: one line ``ssn-X: error: ...``; other
       OSErrors (a full disk, an I/O error) are runtime failures, 1
130    interrupted with Ctrl-C (KeyboardInterrupt): one line, no traceback
=====  ===========================================================================

A traceback follows the error line only with ``--verbose`` (``-v``) or with the
environment variable ``SSN_DEBUG=1``; ``--verbose`` also logs at DEBUG level.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Callable, Optional, Sequence

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

LOG_FORMAT = "%(name)s: %(message)s"


class UsageError(Exception):
    """A command was called wrongly in a way its parser cannot see (exit 2)."""


#: What exits 2 in every command: bad values and input files.
INPUT_ERRORS: tuple[type[BaseException], ...] = (
    UsageError, ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
    PermissionError, FileExistsError)


class CommandFormatter(logging.Formatter):
    """``name: message``, with ``error:`` after the name for errors, as argparse writes."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.ERROR:
            text = text.replace(f"{record.name}: ", f"{record.name}: error: ", 1)
        return text


class DefaultsHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help that shows each option's default, unless its text already says it; the
    description as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("(default" in text or action.default in (None, argparse.SUPPRESS)
                or isinstance(action, argparse._StoreConstAction)  # flags: True/False
                or not action.option_strings):
            return text
        return text + " (default: %(default)s)"


def command_parser(prog: str, **kwargs) -> argparse.ArgumentParser:
    """An ``ssn-*`` command's parser, named ``prog``, with ``--verbose``; ``kwargs`` go to
    ArgumentParser (the description is shown as written unless another formatter_class
    is given)."""
    kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
    parser = argparse.ArgumentParser(prog=prog, **kwargs)
    add_verbose(parser)
    return parser


def add_verbose(parser: argparse.ArgumentParser) -> None:
    """``--verbose``/``-v``: DEBUG logging, and a traceback with an error."""
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log details (DEBUG) and show the traceback of an error "
                             "(also: SSN_DEBUG=1)")


def debugging(args: Optional[argparse.Namespace] = None) -> bool:
    """Whether errors show their traceback: ``--verbose`` or ``SSN_DEBUG=1``."""
    return bool(getattr(args, "verbose", False)) or os.environ.get("SSN_DEBUG", "") not in (
        "", "0")


def setup_logging(verbose: bool) -> None:
    """INFO (DEBUG when verbose) to stderr as ``name: message``, unless the root logger
    already has a handler (pytest's, an embedding program's): then nothing changes."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(CommandFormatter(LOG_FORMAT))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def run_command(body: Callable[[argparse.Namespace], Optional[int]],
                parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None, *,
                input_errors: tuple[type[BaseException], ...] = ()) -> int:
    """Parse ``argv``, run ``body(args)`` and return the command's exit status.

    Parameters
    ----------
    body : callable
        The command's work; returns its exit status, or None for 0.
    parser : argparse.ArgumentParser
        The command's parser (:func:`command_parser`); its ``prog`` names the command
        in error lines. ``--help`` and usage errors exit through argparse (SystemExit
        0 and 2).
    argv : sequence of str, optional
        The arguments (default: ``sys.argv[1:]``).
    input_errors : tuple of exception types
        This command's own errors that mean bad input (exit 2), besides
        :data:`INPUT_ERRORS`.
    """
    args = parser.parse_args(None if argv is None else list(argv))
    setup_logging(debugging(args))
    log = logging.getLogger(parser.prog)
    try:
        status = body(args)
    except KeyboardInterrupt:
        log.error("interrupted")
        return EXIT_INTERRUPTED
    except INPUT_ERRORS + input_errors as error:
        report(log, error, args, expected=True)
        return EXIT_USAGE
    except Exception as error:  # noqa: BLE001 - the one place a command's failure is told
        report(log, error, args,
               expected=isinstance(error, (RuntimeError, ArithmeticError, OSError)))
        return EXIT_FAILURE
    return EXIT_OK if status is None else int(status)


def report(log: logging.Logger, error: BaseException, args: argparse.Namespace,
           expected: bool) -> None:
    """One line for ``error`` (with its type when not ``expected``, i.e. when the type says
    more than the message: a KeyError, a bug); its traceback too when debugging."""
    message = str(error)
    if not expected or not message:
        message = f"{type(error).__name__}: {message}" if message else type(error).__name__
    log.error("%s", message, exc_info=error if debugging(args) else None)
