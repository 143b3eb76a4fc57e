"""`e2ee-ops config`: show the effective configuration and validate it."""

from __future__ import annotations

import typer

from e2ee_ops.cli.common import OutputOption, app_context, finish

app = typer.Typer(name="config", help="Show and validate the configuration.", no_args_is_help=True)


@app.command("show")
def show(ctx: typer.Context, output: OutputOption = None) -> None:
    """Print every effective setting and where it came from; secrets only by reference."""
    loaded = app_context(ctx).config
    where = str(loaded.file) if loaded.file else "no file"
    profile = f", profile {loaded.profile}" if loaded.profile else ""
    title = f"effective configuration ({where}{profile})"
    finish(ctx, loaded.entries(), output=output, title=title)


@app.command("validate")
def validate(ctx: typer.Context, output: OutputOption = None) -> None:
    """Check the configuration: schema (exit 3 when invalid), secrets and files (exit 1)."""
    from e2ee_ops.procedures.config import check_config

    env = app_context(ctx)
    finish(ctx, check_config(env.config, environ=env.environ), output=output)
