"""Helpers shared by the commands."""

from __future__ import annotations

import click


def load_profile(ctx: click.Context):
    """Load the profile chosen with ``--profile`` (or the default), or exit with one clear line."""
    from aiida import load_profile as aiida_load_profile
    from aiida.common.exceptions import (
        ConfigurationError,
        MissingConfigurationError,
        ProfileConfigurationError,
    )

    name = ctx.find_root().obj.get('profile') if ctx.find_root().obj else None
    try:
        return aiida_load_profile(name, allow_switch=True)
    except (ConfigurationError, MissingConfigurationError, ProfileConfigurationError) as exception:
        message = str(exception).splitlines()[0] if str(exception) else type(exception).__name__
        raise click.ClickException(
            f'no usable AiiDA profile ({message}); run `aiida-dielectrics setup` first'
        ) from exception
