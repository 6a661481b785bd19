"""``python -m gliomagrade.cli``: the same entry point as the ``glioma`` command."""

import sys

from gliomagrade.cli import main

sys.exit(main())
