"""``python -m crema ...``: the ``crema`` command, inside Python (so Python layers work)."""

import sys

from . import main

sys.exit(main())
