"""The CLI runner every ``python -m <stage>`` uses.

- Options and dotted overrides (``a.b=1``) mix in any order: ``--config c.yaml a.b=1 --flag
  c.d=2`` works, which argparse's positionals alone do not allow.
- A condition a user can cause (a bad key, a missing file, a refused input) is one line on
  stderr, ``error: <what, naming the key, file or shard>``, and exit status 2; never a
  traceback. Bugs still raise.
"""
from __future__ import annotations

import argparse
import errno
import logging
import signal
import sys
from collections.abc import Callable, Sequence

from mamo.core.config import ConfigError
from mamo.core.logs import process_rank, setup_logging

EXIT_USAGE = 2


class UserError(Exception):
    """A fault the user can fix (bad input, missing file, a held lock); its message is one line."""


class StageExit(Exception):
    """A stage ending early on purpose (a signal, an abort) with its own exit status.

    ``error=True`` prints ``error: <message>`` on stderr; otherwise the message is logged.
    """

    exit_code: int = 1
    error: bool = True


class Terminated(StageExit):
    """SIGTERM reached a stage that asked for it (``run(..., sigterm=True)``): its ``finally``
    blocks and temp-file cleanup run as for Ctrl-C; the exit status is 128 + SIGTERM."""

    exit_code = 128 + signal.SIGTERM


#: an output that cannot be written (disk full, quota, read-only, no permission): one line
#: naming the path and the stage, exit 2; the user frees space or fixes the mount and reruns
OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})

#: exceptions reported as one line with exit 2; stages add their own with ``user_errors=``
USER_ERRORS: tuple[type[BaseException], ...] = (UserError, ConfigError, FileNotFoundError,
                                                 NotADirectoryError, PermissionError)


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None,
               overrides_dest: str = "overrides") -> argparse.Namespace:
    """``parser.parse_args`` where ``key=value`` words may stand anywhere among the options.

    The overrides land in ``args.<overrides_dest>`` (a list; parsers or sub-parsers that take
    none reject them with argparse's usual message).
    """
    args, extra = parser.parse_known_args(argv)
    overrides = [a for a in extra if "=" in a and not a.startswith("-")]
    unknown = [a for a in extra if a not in overrides]
    accepts = hasattr(args, overrides_dest)
    if unknown or (overrides and not accepts):
        parser.error(f"unrecognized arguments: {' '.join(unknown or overrides)}")
    if accepts:
        setattr(args, overrides_dest, list(getattr(args, overrides_dest) or []) + overrides)
    return args


def describe(e: BaseException) -> str:
    """One line for a user-caused error (file errors name their path)."""
    if isinstance(e, OSError) and getattr(e, "filename", None) and e.strerror:
        return f"{e.strerror}: {e.filename}"
    text = str(e).strip() or type(e).__name__
    return " ".join(text.split())


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(f"stopped by {signal.Signals(signum).name}; rerun the same command to resume")


def run(main: Callable[[], int | None], user_errors: tuple[type[BaseException], ...] = (),
        stage: str = "", sigterm: bool = False) -> int:
    """Run ``main`` with logging set up; user errors become one line and exit 2.

    ``stage`` names the stage in the line of an output fault (``OUTPUT_ERRNOS``);
    ``sigterm=True`` turns SIGTERM into ``Terminated`` (exit 143) so that the stage stops
    as on Ctrl-C (exit 130), leaving what it finished in place for a rerun.
    """
    for stream in (sys.stdout, sys.stderr):
        # an ASCII locale (LC_ALL=C with PYTHONUTF8=0): print "caf\xe9" rather than fail on "café"
        if hasattr(stream, "reconfigure") and "utf" not in (stream.encoding or "").lower():
            stream.reconfigure(errors="backslashreplace")
    setup_logging()
    if sigterm:
        signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return int(main() or 0)
    except OSError as e:
        if e.errno not in OUTPUT_ERRNOS and not isinstance(e, USER_ERRORS + tuple(user_errors)):
            raise
        if process_rank() == 0:
            where = f"{stage}: " if stage and e.errno in OUTPUT_ERRNOS else ""
            print(f"error: {where}{describe(e)}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except USER_ERRORS + tuple(user_errors) as e:
        if process_rank() == 0:
            print(f"error: {describe(e)}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except StageExit as e:
        if process_rank() == 0:
            if e.error:
                print(f"error: {describe(e)}", file=sys.stderr, flush=True)
            else:
                logging.getLogger(__name__).info("%s", e)
        return e.exit_code
    except KeyboardInterrupt:
        logging.getLogger(__name__).warning("interrupted; rerun the same command to resume")
        return 130
