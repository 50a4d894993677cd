"""``python -m ntm``: the command line."""

from .cli import main

raise SystemExit(main())
