"""`trialcoord` command line: every feature adds its own commands to one parser; this runs the one asked for and
maps errors to exit codes.

Exit status: 0 success, 1 a protocol, audit trail or stored document that does not verify,
2 bad input or arguments (named by file, line and field), 3 a conflict with what is stored; 130 interrupted,
141 the output's reader went away (`| head`), as for a command killed by SIGPIPE.
"""

from __future__ import annotations

import argparse
import os
import sys

from trialcoord.accounts import cli as accounts
from trialcoord.amendments import cli as amendments
from trialcoord.audit import cli as audit
from trialcoord.cli import backup, system, verify
from trialcoord.demo import cli as demo
from trialcoord.deviations import cli as deviations
from trialcoord.documents import cli as documents
from trialcoord.exports import cli as exports
from trialcoord.kernel.command_support import EXIT_BAD_INPUT, EXIT_CONFLICT, EXIT_TRAIL_BROKEN, UsageError
from trialcoord.scheduling import cli as scheduling

EXIT_INTERRUPTED, EXIT_PIPE_CLOSED = 130, 141

# From the bottom up, so that a group (such as `protocol`) is made by the lowest feature that has commands in it;
# `--help` lists the commands in this order.
FEATURES = (scheduling, accounts, documents, deviations, amendments, audit, demo, exports, system, backup, verify)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trialcoord", description="Visit schedules and compliance for a trial site.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for feature in FEATURES:
        feature.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Everything the commands and the server make (database, exports, render cache, logs, keys) is the
    # owner's only: directories 0700, files 0600 (issue 17).
    os.umask(0o077)
    from trialcoord.kernel.config import ConfigError
    from trialcoord.kernel.problems import InvalidInput

    try:
        status = args.run(args)
        sys.stdout.flush()  # here, not at exit: a reader gone by now is a BrokenPipeError caught below
        return status
    except BrokenPipeError:
        return _reader_gone()
    except InvalidInput as error:
        for problem in error.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (UsageError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except _service_errors() as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CONFLICT if type(error).__name__ == "Conflict" else EXIT_BAD_INPUT
    except _key_errors() as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except _trail_broken() as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_TRAIL_BROKEN
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _reader_gone() -> int:
    """The recipe of Python's `signal` documentation: what is still buffered for stdout goes to devnull, so the
    interpreter's flush at exit finds no broken pipe (and prints nothing)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_PIPE_CLOSED


def _service_errors() -> tuple[type[Exception], ...]:
    from trialcoord.kernel.problems import Conflict, Forbidden, NotConfigured, NotFound

    return (Conflict, NotFound, Forbidden, NotConfigured)


def _key_errors() -> tuple[type[Exception], ...]:
    from trialcoord.kernel.pii import PiiError
    from trialcoord.kernel.signing_keys import CheckpointError, SigningKeyError

    return (CheckpointError, SigningKeyError, PiiError)


def _trail_broken() -> tuple[type[Exception], ...]:
    from trialcoord.kernel.audit_log import TrailBroken

    return (TrailBroken,)


if __name__ == "__main__":
    sys.exit(main())
