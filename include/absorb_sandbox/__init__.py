"""Offline simulator of the Absorb LMS Integration API v2, for tests, benchmarks and demos.

Run it with ``absorb-sandbox serve --db absorb.db --port 8765`` (see ``absorb_sandbox.cli``) or,
from tests, ``absorb_sandbox.testing.SandboxServer``. Modules:

- ``store`` / ``seed``: SQLite schema and the deterministic organisation (``seed.course_id(name)``).
- ``app`` / ``middleware`` / ``service`` / ``users`` / ``attempts`` / ``activities``: the API.
- ``odata``: ``_filter`` / ``_sort`` compiled to SQL; ``faults``: fault injection and rate limit.
- ``hr_feed``: the HR feed CSV export; ``testing``: the subprocess harness.
- ``shared``: what the server processes share (stats, rate-limit buckets, fault spec) in
  ``<db>-state.db``; issued tokens live in the database itself.

Throughput: ``serve --workers N`` runs N processes on the one SQLite (WAL) database; the rate
limit, the one-live-token-per-user rule, ``/_sandbox/stats`` (with ``by_worker`` and ``paging``
counters) and the faults hold across them, fault sequences are repeatable per process (see
``faults``). Paged listings keep Absorb's page-index paging for clients, but a process that
served page N of a query serves page N+1 as a keyset seek (``WHERE rowid > last``), jumps walk
only the main table's index, and ``totalItems`` is cached per query; any write by any process
(``PRAGMA data_version``) drops these caches, so pages are byte-identical to
``COUNT(*)`` + ``LIMIT/OFFSET``, which ``--paging offset`` still serves for comparisons. A
``_sort`` other than the default order pages with OFFSET (the count is still cached).

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
