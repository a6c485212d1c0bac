# Sourced by the other scripts. The interpreter's own scripts folder first on PATH: `python` is then the
# interpreter itself, not a pyenv shim (whose pip hook re-hashes the shims under a lock and fails the
# install when another process holds it), and the installed commands (verdi, aiida-dielectrics, ruff)
# are found without shims.
PATH="$(python -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
export PATH
