"""``python -m app.cli``: the ``archon-db`` command."""

from app.cli import main

main()
