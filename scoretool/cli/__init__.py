"""The Typer app: one thin module per command; they parse, call the library and report."""

from typing import Annotated

import typer

from ..files import set_pixel_budget
from .common import JsonUsageErrors

app = typer.Typer(
    name="scoretool",
    help="Restore images with score priors: Tweedie denoising, Noise2Score training, zero-shot restoration, "
    "OOD scoring and unsupervised evaluation. Run `scoretool COMMAND --help` for each command.",
    no_args_is_help=True,
    cls=JsonUsageErrors,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's plain help: rich's help formatter costs 0.13 s of start-up (bench/startup.py)
    context_settings={"help_option_names": ["-h", "--help"]},
)

from . import (  # noqa: E402,F401  (each module registers its command on `app`)
    demo,
    denoise,
    evaluate,
    export,
    info,
    noise,
    ood,
    restore,
    train,
    uncertainty,
)


@app.callback()
def options(
    max_pixels: Annotated[int | None, typer.Option(
        "--max-pixels", min=1, envvar="SCORETOOL_MAX_PIXELS",
        help="Largest image, restore output or work array in pixels (width × height × frames), checked before "
        "anything is allocated; larger files fail with an error. Default: available memory / 256 bytes.")] = None,
) -> None:
    """Options for every command (before the command name: `scoretool --max-pixels N denoise …`)."""
    set_pixel_budget(max_pixels)


def main() -> None:
    app()
