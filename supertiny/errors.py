"""The one exception type users see: the CLI prints its message on one line and exits non-zero."""


class SuperTinyError(Exception):
  """A problem with the user's input (a file, a folder, an option), described in one line naming the culprit."""
