"""``python -m swarmnet``: the same as the ``swarmnet`` command."""

import sys

from swarmnet.cli.main import main

sys.exit(main())
