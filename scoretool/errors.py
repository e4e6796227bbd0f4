"""Errors that the CLI turns into one line `Error: …` and an exit code (no traceback)."""


class ScoretoolError(Exception):
    """A problem the user can fix: bad input, bad option, missing file. Message names the cause."""


class InputError(ScoretoolError):
    """One input file cannot be used; a batch reports it and goes on with the others."""

    def __init__(self, path, problem: str):
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class ModelError(ScoretoolError):
    """A model, checkpoint or device cannot be used: every file of a batch would fail alike, so the batch stops."""
