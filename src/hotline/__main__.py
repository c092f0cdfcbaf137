"""``python -m hotline``: the same as the ``hotline`` command."""

import sys

from hotline.cli import main

sys.exit(main())
