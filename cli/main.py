"""The `piumr` console script: a click group whose commands live in the sibling modules."""
from __future__ import annotations

import importlib

import click

# Each module defines click commands and a `COMMANDS` list; imports stay lazy-ish so that
# `piumr --help` does not pay for torch when only extraction is wanted.
_COMMAND_MODULES = ("extract", "train", "ablate", "compare", "importers", "viz")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="piumr")
def cli() -> None:
    """piumr: person-independent micro-action recognition from skeletons."""


for _name in _COMMAND_MODULES:
    _mod = importlib.import_module(f"cli.{_name}")
    for _cmd in _mod.COMMANDS:
        cli.add_command(_cmd)


if __name__ == "__main__":  # `torchrun --nproc_per_node N -m cli.main train ...`
    cli()
