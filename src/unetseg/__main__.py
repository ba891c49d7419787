"""`python -m unetseg` (and `torchrun -m unetseg`) run the `unetseg` command."""

import sys

from .cli import main

sys.exit(main())
