"""The one exception type users see: the CLI prints its message on one line and exits non-zero."""


class SuperTinyError(Exception):
  """A problem with the user's input (a file, a folder, an option), described in one line naming the culprit."""


def first_line(exc: BaseException) -> str:
  """The first line of an exception's message, or its type's name when it has none: for one-line errors."""
  text = str(exc).strip()
  return text.splitlines()[0] if text else type(exc).__name__


class Terminated(KeyboardInterrupt):
  """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt so the same clean-up runs (temporary files
  removed, a training run saved); the CLI then exits 143 instead of 130."""


def raise_terminated(signum: int, frame: object) -> None:
  """A SIGTERM handler: see Terminated."""
  raise Terminated
