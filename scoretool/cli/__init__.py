"""The Typer app: one thin module per command; they parse, call the library and report."""

import typer

app = typer.Typer(
    name="scoretool",
    help="Restore images with score priors: Tweedie denoising, Noise2Score training, DDNM restoration, "
    "OOD scoring and unsupervised evaluation. Run `scoretool COMMAND --help` for each command.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
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


def main() -> None:
    app()
