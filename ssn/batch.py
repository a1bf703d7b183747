"""Old home of the batch-inference library, now :mod:`ssn.infer`: the names it had,
re-exported so that existing imports keep working. New code imports from
:mod:`ssn.infer` and its modules; ``run(args)`` is the ``ssn-infer`` command's body,
now :func:`ssn.cli.infer.run` (the library's entry point is
:func:`ssn.infer.run.run_batch`).
"""
from __future__ import annotations

import argparse
import warnings

from ssn.infer.inputs import assign_names, expand_inputs, is_output, printable
from ssn.infer.job import (
    TOOL,
    Item,
    Job,
    RunError,
    settings_difference,
    weights_sha256,
)
from ssn.infer.outputs import (
    STALE_TEMP_AGE_S,
    TEMP_NAME,
    check_out,
    conflicts,
    remove_stale_temporaries,
    summary_rows,
    write_summary,
)
from ssn.infer.records import (
    LEGACY_SUMMARY_FIELDS,
    OUTPUT_FILES,
    RECORD_FORMAT,
    RECORD_SUFFIX,
    SUMMARY_FIELDS,
    check_labels,
    find_mask,
    mask_identity,
    output_paths,
    read_record,
    record_path,
    source_identity,
    summary_row,
    verify,
)
from ssn.infer.run import BatchResult, Terminated, run_batch, sigterm_stops_the_run
from ssn.infer.task import (
    NAME_ERRNOS,
    TASKS,
    make_settings,
    process,
    read_item_mask,
    record_failure,
    segment,
)
from ssn.threads import limit_threads

__all__ = [
    "LEGACY_SUMMARY_FIELDS", "NAME_ERRNOS", "OUTPUT_FILES", "RECORD_FORMAT", "RECORD_SUFFIX",
    "STALE_TEMP_AGE_S", "SUMMARY_FIELDS", "TASKS", "TEMP_NAME", "TOOL", "BatchResult", "Item",
    "Job", "RunError", "Terminated", "assign_names", "check_labels", "check_out", "conflicts",
    "expand_inputs", "find_mask", "is_output", "limit_threads", "make_settings",
    "mask_identity", "output_paths", "printable", "process", "read_item_mask", "read_record",
    "record_failure", "record_path", "remove_stale_temporaries", "run", "run_batch",
    "segment", "settings_difference", "sigterm_stops_the_run", "source_identity",
    "summary_row", "summary_rows", "verify", "weights_sha256", "write_summary",
]


def run(args: argparse.Namespace) -> int:
    """Deprecated: :func:`ssn.cli.infer.run` (the command's body, exit status included),
    or :func:`ssn.infer.run.run_batch` from a program."""
    from ssn.cli.infer import run as run_command_body  # the command's module, not the library's
    warnings.warn("ssn.batch.run is deprecated: use ssn.infer.run_batch, or ssn.cli.infer.run "
                  "for the command's exit status", DeprecationWarning, stacklevel=2)
    return run_command_body(args)
