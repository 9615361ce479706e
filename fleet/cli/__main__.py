"""``python -m fleet.cli``: the `analog-edge` command, for a source tree that is not installed."""
import sys

from fleet.cli.entry import main

sys.exit(main())
