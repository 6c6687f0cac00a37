"""Offline simulator of the Absorb LMS Integration API v2, for tests, benchmarks and demos.

Run it with ``absorb-sandbox serve --db absorb.db --port 8765`` (see ``absorb_sandbox.cli``) or,
from tests, ``absorb_sandbox.testing.SandboxServer``. Modules:

- ``store`` / ``seed``: SQLite schema and the deterministic organisation (``seed.course_id(name)``).
- ``app`` / ``middleware`` / ``service`` / ``users`` / ``attempts`` / ``activities``: the API.
- ``odata``: ``_filter`` / ``_sort`` compiled to SQL; ``faults``: fault injection and rate limit.
- ``hr_feed``: the HR feed CSV export; ``testing``: the subprocess harness.

Where the real API is unknown or the sandbox deliberately differs (documented deviations):

- ``POST /users/{id}/enrollments`` also sets ``dateDue``; it answers 201 when it creates and 200
  when it updates the active enrollment; a repeat with the same values changes nothing.
- Course enrollment lists include historical (``isActive=false``) enrollments; filter
  ``isActive eq true`` for current ones. ``GET /users/{u}/enrollments/{c}`` returns the active one.
- ``POST /enrollments/unenroll`` is all-or-nothing: any unknown id is a 422 and nothing is removed;
  success is 200 with an empty body. Removed enrollments are deleted (a later GET is 404).
- ``x-api-version`` other than 2 is a 400; ``Retry-After`` is sent with every 429.
- Chapter/lesson/attempt rows of *seeded* enrollments are created on first use (fast seeding);
  enrollments created through the API get them at once.
- ``POST /_sandbox/reset`` keeps issued tokens (clients stay logged in).
"""
