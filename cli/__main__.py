"""``python -m cli ...`` is the ``inspector`` command."""

import sys

from cli.main import main

sys.exit(main())
