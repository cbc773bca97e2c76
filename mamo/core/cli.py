"""The CLI runner every ``python -m <stage>`` uses.

- Options and dotted overrides (``a.b=1``) mix in any order: ``--config c.yaml a.b=1 --flag
  c.d=2`` works, which argparse's positionals alone do not allow.
- A condition a user can cause (a bad key, a missing file, a refused input) is one line on
  stderr, ``error: <what, naming the key, file or shard>``, and exit status 2; never a
  traceback. Bugs still raise.
"""
from __future__ import annotations

import argparse
import logging
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


def run(main: Callable[[], int | None], user_errors: tuple[type[BaseException], ...] = ()) -> int:
    """Run ``main`` with logging set up; user errors become one line and exit 2."""
    setup_logging()
    try:
        return int(main() or 0)
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
        logging.getLogger(__name__).warning("interrupted")
        return 130
