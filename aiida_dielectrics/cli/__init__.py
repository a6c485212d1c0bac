"""``aiida-dielectrics``: the command line, ``verdi``-like.

Commands that need the database load the AiiDA profile themselves (``--profile`` or the default),
so that profile-free commands run anywhere. A user's mistake ends in one ``Error:`` line and exit 1.
"""

import warnings

import click

from aiida_dielectrics import __version__

# aiida-core says so on the first command of a new user; `setup` reports what it creates itself.
warnings.filterwarnings('ignore', message='Creating AiiDA configuration folder')


@click.group(context_settings={'help_option_names': ['-h', '--help']})
@click.version_option(__version__, '-V', '--version')
@click.option(
    '-p', '--profile', 'profile_name', metavar='NAME', help='AiiDA profile to use (default: the default).'
)
@click.pass_context
def cli(ctx, profile_name):
    """ML-guided discovery of dielectric materials, verified by DFPT, recorded by AiiDA."""
    ctx.obj = {'profile': profile_name}


# Command modules register themselves on ``cli`` when imported.
from aiida_dielectrics.cli import data, dfpt, export, plot, predict, setup, train  # noqa: E402, F401
