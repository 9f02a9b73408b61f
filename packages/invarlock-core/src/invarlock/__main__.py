"""``python -m invarlock``: the ``invarlock`` command."""

import sys

from invarlock.cli import main

sys.exit(main())
