"""`python -m jaxode` runs the `jaxode` command."""

import sys

from ._cli import main

sys.exit(main())
