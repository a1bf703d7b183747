"""Every ``ssn-*`` command starts and exits through run_command: --help names it, a bad
argument exits 2 with one error line, failures exit 1 and Ctrl-C 130, without tracebacks.

The commands are read from setup.py's console_scripts, so a new one is covered as soon
as it is declared.
"""
import argparse
import importlib
import logging
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ssn.cli.command import command_parser, run_command

REPO = Path(__file__).resolve().parents[1]


def console_scripts() -> dict[str, str]:
    """{command name: module} of setup.py's console_scripts."""
    text = (REPO / "setup.py").read_text()
    found = dict(re.findall(r'"(ssn-[a-z0-9-]+)\s*=\s*([\w.]+):main"', text))
    assert len(found) >= 19, found  # the parse still finds them all
    return found


COMMANDS = console_scripts()


def call(module: str, argv: list[str]):
    """``module.main(argv)``'s exit status, in this process (SystemExit's code, or the
    returned status)."""
    main = importlib.import_module(module).main
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_names_the_command(name, capsys):
    assert call(COMMANDS[name], ["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {name} ")
    assert "examples:" in out and "--verbose" in out
    assert "python tools/" not in out  # examples show the command itself
    assert not re.search(r"\(default: [^()]*\) \(default:", " ".join(out.split()))


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_bad_option_exits_2_with_one_error_line(name, capsys):
    assert call(COMMANDS[name], ["--no-such-option"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert errors == [err.splitlines()[-1]] and errors[0].startswith(f"{name}: error: ")
    assert "Traceback" not in err


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ssn-data", "ssn-infer", "ssn-train"])
def test_the_tools_scripts_run_the_same_command(name):
    script = REPO / "tools" / (name.removeprefix("ssn-").replace("-", "_") + ".py")
    result = subprocess.run([sys.executable, str(script), "--help"], capture_output=True,
                            text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0 and result.stdout.startswith(f"usage: {name} ")


def parser() -> argparse.ArgumentParser:
    return command_parser("ssn-test", description="a test command")


@pytest.mark.parametrize("error, status", [
    (ValueError("bad value"), 2), (FileNotFoundError("no such file"), 2),
    (NotADirectoryError("not a folder"), 2), (RuntimeError("it broke"), 1),
    (FloatingPointError("diverged"), 1), (KeyError("key"), 1), (KeyboardInterrupt(), 130),
    (PermissionError("read-only"), 2), (OSError(28, "No space left on device"), 1),
])
def test_run_command_turns_an_error_into_its_status(error, status, caplog):
    def body(args):
        raise error
    assert run_command(body, parser(), []) == status
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.name == "ssn-test" and record.exc_info is None  # no traceback
    if isinstance(error, KeyError):
        assert record.getMessage() == "KeyError: 'key'"  # the type says what went wrong
    elif not isinstance(error, KeyboardInterrupt):
        assert record.getMessage() == str(error)


def test_run_command_returns_the_body_status(caplog):
    assert run_command(lambda args: None, parser(), []) == 0
    assert run_command(lambda args: 1, parser(), []) == 1
    assert not caplog.records


def test_a_command_own_input_errors_exit_2():
    class FetchFailed(RuntimeError):
        pass

    def body(args):
        raise FetchFailed("truncated download")
    assert run_command(body, parser(), []) == 1
    assert run_command(body, parser(), [], input_errors=(FetchFailed,)) == 2


@pytest.mark.parametrize("argv, env", [(["--verbose"], {}), (["-v"], {}),
                                       ([], {"SSN_DEBUG": "1"})])
def test_verbose_or_ssn_debug_shows_the_traceback(argv, env, caplog, monkeypatch):
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    def body(args):
        raise RuntimeError("it broke")
    assert run_command(body, parser(), argv) == 1
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.exc_info is not None


FAILING_COMMAND = """
import sys
from ssn.cli.command import command_parser, run_command
def body(args):
    raise RuntimeError("the device is gone")
sys.exit(run_command(body, command_parser("ssn-test"), sys.argv[1:]))
"""


def run_python(code: str, *argv: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(REPO), "SSN_DEBUG": "0"}
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True,
                          text=True, timeout=120, env=environment, cwd=REPO)


def test_a_failure_is_one_line_on_stderr_and_exit_1():
    result = run_python(FAILING_COMMAND)
    assert result.returncode == 1
    assert result.stderr == "ssn-test: error: the device is gone\n"
    verbose = run_python(FAILING_COMMAND, "--verbose")
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr
    assert verbose.stderr.startswith("ssn-test: error: the device is gone\n")


@pytest.mark.slow
def test_bad_input_is_one_line_on_stderr_and_exit_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "ssn.cli.eval_snapshots", str(tmp_path / "missing"),
         "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300,
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), "SSN_DEBUG": "0"})
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("ssn-eval-snapshots: error: ") and "missing" in line


@pytest.mark.slow
def test_ctrl_c_exits_130_without_a_traceback(tmp_path):
    """ssn-data waiting on a server that never answers, interrupted."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(120)
        url = f"http://127.0.0.1:{server.getsockname()[1]}/BSR.tgz"
        process = subprocess.Popen(
            [sys.executable, "-m", "ssn.cli.data", "fetch", "bsds500", "--to",
             str(tmp_path / "BSDS500"), "--url", url], stderr=subprocess.PIPE, text=True,
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), "SSN_DEBUG": "0"})
        connection, _ = server.accept()  # the command is now waiting for the answer
        with connection:
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert err.splitlines()[-1] == "ssn-data: error: interrupted" and "Traceback" not in err
