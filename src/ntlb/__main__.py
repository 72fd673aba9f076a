"""`python -m ntlb ...` (what `torchrun ... -m ntlb` starts in each process)."""

import sys

from .cli import main

sys.exit(main())
