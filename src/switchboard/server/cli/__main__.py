"""``python -m switchboard.server.cli``: the same command line as ``switchboard``."""

import sys

from switchboard.server.cli import main

sys.exit(main())
