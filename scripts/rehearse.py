#!/usr/bin/env python
"""``make rehearse FEED=... [RULES=...]``: the first sync rehearsed on a local clone of the portal.

See ``absorb_sync.portal.rehearse`` and the README ("Pointing it at a real Absorb portal").
"""

from __future__ import annotations

import sys

from absorb_sync.portal.rehearse import main

if __name__ == "__main__":
    sys.exit(main())
