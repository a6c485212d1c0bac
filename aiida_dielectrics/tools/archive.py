"""Sharing a campaign: its group and provenance as an AiiDA archive (``verdi archive create``)."""

from __future__ import annotations

import pathlib


def export_group(group, path) -> tuple[pathlib.Path, int]:
    """Write ``group`` with its provenance: the creators of its nodes and their inputs (AiiDA's default)
    and also the work chains that *returned* its nodes (``return_backward``), so a DFPT result keeps its
    work chain and the candidate structure that went in — the link the plot matches predictions by.

    Returns the archive path and the number of nodes in the group. Comments and logs go along, so the
    receiver sees why a DFPT child failed; authinfos (credentials) never do.
    """
    from aiida.tools.archive import create_archive

    path = create_archive(
        [group], filename=path, overwrite=True, include_authinfos=False, return_backward=True
    )
    return pathlib.Path(path), group.count()
