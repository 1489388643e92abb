"""The ``switchboard`` command line.

Every flag has an environment variable (shown in ``--help``). Every command that
touches the store takes ``--data`` / ``--redis`` exactly as ``serve`` does, so a project
can be created before the first ``serve`` or beside a running one.

One module per command group: ``serve``, ``projects``, ``project_tokens``, ``tokens``
and ``transfer`` (export/import); the shared options and helpers are in ``_options``.
"""

from __future__ import annotations

import click

from switchboard import __version__
from switchboard.server.cli.project_tokens import project_tokens
from switchboard.server.cli.projects import projects
from switchboard.server.cli.serve import serve
from switchboard.server.cli.tokens import tokens
from switchboard.server.cli.transfer import export_command, import_command

__all__ = ["main"]


# show_default once here, not on each option: click hands it down to every command.
@click.group(
    context_settings={
        "help_option_names": ["-h", "--help"],
        "max_content_width": 100,
        "show_default": True,
    }
)
@click.version_option(__version__, prog_name="switchboard")
def main() -> None:
    """Switchboard: a self-hostable realtime Channels server with Tokens, Hop-compatible."""


for _command in (serve, projects, project_tokens, tokens, export_command, import_command):
    main.add_command(_command)
