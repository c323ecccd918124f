"""``python -m app`` runs the ``cutout`` command line."""

import sys

from app.cli import main

sys.exit(main())
