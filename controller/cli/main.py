"""Entry point of the `meshlet` CLI.

Each verb lives in its own module exposing a click command; the group imports
a module only when its verb runs, so `meshlet --help` and quick verbs start fast.
To add a verb, add one line to COMMANDS.
"""
from __future__ import annotations

import importlib

import click

# verb -> "module:attribute" (the attribute is a click.Command)
COMMANDS: dict[str, str] = {
    "up": "meshlet.controller.cli.up:up",
    "down": "meshlet.controller.cli.down:down",
    "apply": "meshlet.controller.cli.apply:apply",
    "delete": "meshlet.controller.cli.apply:delete",
    "get": "meshlet.controller.cli.get:get",
    "logs": "meshlet.controller.cli.logs:logs",
    "exec": "meshlet.controller.cli.exec:exec_",
    "check": "meshlet.controller.cli.check:check",
    "analyze": "meshlet.controller.cli.analyze:analyze",
    "proxy-config": "meshlet.controller.cli.proxy_config:proxy_config",
    "inject": "meshlet.controller.cli.inject:inject",
    "install": "meshlet.controller.cli.install:install",
    "uninstall": "meshlet.controller.cli.install:uninstall",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup)
@click.option("--state-dir", envvar="MESHLET_STATE_DIR", type=click.Path(), default=None,
              help="State directory of the local mesh (default /var/lib/meshlet).")
@click.pass_context
def cli(ctx: click.Context, state_dir: str | None) -> None:
    """meshlet: a small service mesh."""
    from meshlet.controller.config import LocalConfig

    ctx.obj = LocalConfig.from_env(state_dir)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
