import sys

from absorb_sandbox.cli import main

sys.exit(main())
