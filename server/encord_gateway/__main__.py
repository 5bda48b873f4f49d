"""`python -m encord_gateway` runs the command line."""

import sys

from encord_gateway.cli import main

sys.exit(main())
