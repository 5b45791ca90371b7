"""``python -m gradremedy``: the same command line as the ``gradremedy`` script."""

import sys

from gradremedy.cli import main

sys.exit(main())
