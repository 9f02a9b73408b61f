import sys

from invarlock.cli import main

sys.exit(main())
