"""``python -m owtools.sandbox``: see :mod:`owtools.sandbox.cli`."""

import sys

from owtools.sandbox.cli import main

sys.exit(main())
