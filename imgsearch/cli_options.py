"""Options and the progress bar that several command modules share."""

from __future__ import annotations

import sys

import click
from tqdm import tqdm

from .models.base import PRECISIONS


def progress_bar(total: int = 0, desc: str = "") -> tqdm:
    # disable=None: a bar on a terminal, nothing in a CI log or a pipe
    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, disable=None, dynamic_ncols=True)


def status_line(line: str) -> None:
    click.echo(line, err=True)


index_dir_option = click.option(
    "--index-dir", type=click.Path(file_okay=False), default=None,
    help="Where indexes live [default: ./indexes, or $IMGSEARCH_INDEX_DIR].",
)
model_option = click.option("--model", "-m", "models", multiple=True, metavar="SPEC",
                            help="Model spec or preset (repeatable); see `imgsearch models`.")
precision_option = click.option(
    "--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
    help="auto: the precision measured fastest for each model on this machine that keeps its vectors "
         "(cosine >= 0.999 to fp32; see `imgsearch doctor`). int8: quantised Linear layers, CPU only, "
         "faster at a small cost in recall (README).")
