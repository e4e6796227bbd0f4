"""`scoretool uncertainty`: not built yet (see the issue tracker)."""

import typer

from . import app


@app.command(name="uncertainty", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def not_built() -> None:
    """Not built yet in this version."""
    typer.echo("Error: scoretool uncertainty is not built yet in this version", err=True)
    raise typer.Exit(2)
