"""`python -m heartbeatai` is the `heartbeatai` command."""

import sys

from heartbeatai.cli import main

sys.exit(main())
