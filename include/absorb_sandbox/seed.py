"""Deterministic synthetic organisation: people, departments, courses and their enrollments.

Names, departments, users and courses get uuid5 ids from a fixed namespace, so a course's id is
``course_id(name)`` everywhere and a user's id follows from the HR employee id. Enrollments and
their activities get ids from a seeded RNG (same seed name → same ids). Rows are generated as
tuples and bulk-inserted with ``executemany``; indices are built after the load, so the ``large``
seed (~100k people, ~1M enrollments) loads in well under a minute.

Chapter, lesson and attempt rows of seeded online enrollments are created lazily
(see ``activities.ensure_activities``) the first time an operation needs them; enrollments made
through the API get theirs at once.
"""

from __future__ import annotations

import itertools
import random
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from absorb_sandbox import store
from absorb_sandbox.timeutil import to_iso

NAMESPACE = uuid.UUID("6f1c3a52-8d4e-5b7f-9a0c-2e4d6f8a1b3c")

SEED_SIZES = {"none": 0, "small": 200, "medium": 10_000, "large": 100_000}
GENERATED_COURSES = {"none": 0, "small": 12, "medium": 40, "large": 90}

DEPARTMENTS = (
    "Engineering",
    "Sales",
    "Marketing",
    "Finance",
    "Human Resources",
    "Operations",
    "Customer Support",
    "Legal",
)
LOCATIONS = ("New York", "San Francisco", "Toronto", "London", "Berlin", "Sydney")
JOB_TITLES = {
    "Engineering": ("Software Engineer", "Senior Software Engineer", "QA Analyst", "DevOps Engineer"),
    "Sales": ("Account Executive", "Sales Development Rep", "Sales Engineer"),
    "Marketing": ("Marketing Specialist", "Content Strategist", "Product Marketing Manager"),
    "Finance": ("Financial Analyst", "Accountant", "Controller"),
    "Human Resources": ("HR Generalist", "Recruiter", "HR Business Partner"),
    "Operations": ("Operations Analyst", "Facilities Coordinator", "Warehouse Associate"),
    "Customer Support": ("Support Specialist", "Support Team Lead", "Customer Success Manager"),
    "Legal": ("Counsel", "Paralegal", "Compliance Officer"),
}
MANAGER_TITLE = "Manager"
FIRST_NAMES = (
    "Olivia",
    "Liam",
    "Emma",
    "Noah",
    "Ava",
    "Elijah",
    "Sophia",
    "James",
    "Isabella",
    "Lucas",
    "Mia",
    "Mateo",
    "Amelia",
    "Benjamin",
    "Harper",
    "Henry",
    "Evelyn",
    "Leo",
    "Aria",
    "Jack",
    "Chloe",
    "Daniel",
    "Layla",
    "Samuel",
    "Nora",
    "David",
    "Zoe",
    "Joseph",
    "Priya",
    "Wei",
    "Fatima",
    "Omar",
    "Yuki",
    "Hiro",
    "Ingrid",
    "Lars",
    "Chiara",
    "Marco",
    "Aisha",
    "Kwame",
)
LAST_NAMES = (
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Clark",
    "Lewis",
    "Walker",
    "Young",
    "Nguyen",
    "Kim",
    "Patel",
    "Singh",
    "Chen",
    "Müller",
    "Schmidt",
    "Rossi",
    "Dubois",
    "Okafor",
)

ONLINE_NAMED_COURSES = (
    "Code of Conduct",
    "Information Security Awareness",
    "Anti-Harassment Training",
    "Workplace Safety",
    "Manager Essentials",
    "Data Privacy (GDPR)",
    "Sales Compliance",
)
NEW_HIRE_ILC = "New Hire Orientation"
MULTI_SESSION_ILC = "Leadership Workshop Series"
EXTRA_ILCS = ("Negotiation Workshop", "First Aid Certification")
NAMED_COURSE_COUNT = len(ONLINE_NAMED_COURSES) + 2 + len(EXTRA_ILCS)
COURSE_TOPICS = (
    "Excel",
    "Project Management",
    "Public Speaking",
    "Time Management",
    "Python",
    "SQL",
    "Customer Empathy",
    "Design Thinking",
    "Agile",
    "Cloud Basics",
    "Budgeting",
    "Writing",
    "Negotiation",
    "Leadership",
    "Coaching",
    "Accessibility",
)
COURSE_LEVELS = ("Fundamentals", "Intermediate", "Advanced", "Masterclass", "Refresher", "Lab")
LESSON_TYPES = ("ObjectLesson", "VideoLesson", "AssessmentLesson")

API_USER_ID_NAME = "api-user"

# Enrollment statuses with seeding weights (every status occurs in every seed).
STATUS_WEIGHTS = {0: 24, 1: 24, 2: 2, 3: 36, 4: 3, 5: 3, 6: 1, 7: 1, 8: 1, 9: 1, 10: 1, 11: 1, 12: 2}


def course_id(name: str) -> str:
    """The stable id of the course with this exact name."""
    return str(uuid.uuid5(NAMESPACE, f"course:{name}"))


def department_id(name: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"department:{name}"))


def department_external_id(name: str) -> str:
    """The stable external id of a seeded department: ``DEP-HUMAN-RESOURCES`` for "Human Resources"."""
    return "DEP-" + "-".join(name.upper().split())


def ensure_department_external_ids(conn: sqlite3.Connection) -> None:
    """Give a db seeded before departments had external ids the column and the seeded values."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(departments)")}
    if "external_id" not in columns:
        conn.execute("ALTER TABLE departments ADD COLUMN external_id TEXT")
    conn.executemany(
        "UPDATE departments SET external_id = ? WHERE id = ? AND external_id IS NULL",
        [(department_external_id(d), department_id(d)) for d in DEPARTMENTS],
    )


def user_id(external_id: str) -> str:
    """The stable id of the seeded user with this HR employee id (``E000001``...)."""
    return str(uuid.uuid5(NAMESPACE, f"user:{external_id}"))


def chapter_id(course: str, position: int) -> str:
    return str(uuid.uuid5(NAMESPACE, f"chapter:{course}:{position}"))


def lesson_id(course: str, chapter_position: int, position: int) -> str:
    return str(uuid.uuid5(NAMESPACE, f"lesson:{course}:{chapter_position}:{position}"))


def session_id(course: str, position: int) -> str:
    return str(uuid.uuid5(NAMESPACE, f"session:{course}:{position}"))


def api_user_id(username: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{API_USER_ID_NAME}:{username}"))


def random_uuid(rng: random.Random) -> str:
    """A version-4 shaped GUID from a seeded RNG (fast and repeatable)."""
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


@dataclass(frozen=True)
class Course:
    id: str
    name: str
    course_type: str  # OnlineCourse | InstructorLedCourse
    multi_session: bool = False
    chapters: int = 0
    lessons_per_chapter: int = 0
    sessions: int = 0


@dataclass
class Person:
    index: int
    id: str
    external_id: str
    first_name: str
    last_name: str
    department: str
    location: str
    job_title: str
    supervisor_id: str | None
    hire_date: date
    hr_status: str
    termination_date: date | None
    preprovisioned: bool
    is_manager: bool


def build_courses(size: str) -> list[Course]:
    """The course catalogue: named compliance courses, ILCs and generated online courses."""
    courses = [
        Course(course_id(n), n, "OnlineCourse", chapters=2, lessons_per_chapter=2)
        for n in ONLINE_NAMED_COURSES
    ]
    courses.append(Course(course_id(NEW_HIRE_ILC), NEW_HIRE_ILC, "InstructorLedCourse", sessions=1))
    courses.append(
        Course(
            course_id(MULTI_SESSION_ILC),
            MULTI_SESSION_ILC,
            "InstructorLedCourse",
            multi_session=True,
            sessions=3,
        )
    )
    courses += [Course(course_id(n), n, "InstructorLedCourse", sessions=1) for n in EXTRA_ILCS]
    for number in range(GENERATED_COURSES[size]):
        topic = COURSE_TOPICS[number % len(COURSE_TOPICS)]
        level = COURSE_LEVELS[(number // len(COURSE_TOPICS)) % len(COURSE_LEVELS)]
        suffix = number // (len(COURSE_TOPICS) * len(COURSE_LEVELS))
        name = f"{topic} {level}" + (f" {suffix + 1}" if suffix else "")
        courses.append(
            Course(
                course_id(name),
                name,
                "OnlineCourse",
                chapters=1 + number % 3,
                lessons_per_chapter=1 + (number // 3) % 3,
            )
        )
    return courses


def build_people(count: int, rng: random.Random, today: date) -> list[Person]:
    """People with managers, hire dates, leavers, people on leave and pre-provisioned hires."""
    people: list[Person] = []
    managers_by_department: dict[str, list[str]] = {d: [] for d in DEPARTMENTS}
    manager_count = max(len(DEPARTMENTS), count // 8)
    for index in range(count):
        external_id = f"E{index + 1:06d}"
        department = (
            DEPARTMENTS[index % len(DEPARTMENTS)] if index < manager_count else rng.choice(DEPARTMENTS)
        )
        is_manager = index < manager_count
        if index == 0:
            supervisor = None
        elif is_manager:
            supervisor = people[rng.randrange(0, min(index, len(DEPARTMENTS)))].id
        else:
            supervisor = rng.choice(managers_by_department[department])
        roll = rng.random()
        preprovisioned = index >= manager_count and roll < 0.09
        if preprovisioned:
            hire_date = today + timedelta(days=rng.randint(-10, 30))
        else:
            hire_date = today - timedelta(days=rng.randint(20, 3650))
        hr_status, termination = "active", None
        if not preprovisioned and index >= manager_count:
            if roll > 0.95:
                hr_status = "terminated"
                termination = today - timedelta(days=rng.randint(1, 400))
                hire_date = min(hire_date, termination - timedelta(days=30))
            elif roll > 0.93:
                hr_status = "leave"
        person = Person(
            index=index,
            id=user_id(external_id),
            external_id=external_id,
            first_name=rng.choice(FIRST_NAMES),
            last_name=rng.choice(LAST_NAMES),
            department=department,
            location=rng.choice(LOCATIONS),
            job_title=MANAGER_TITLE if is_manager else rng.choice(JOB_TITLES[department]),
            supervisor_id=supervisor,
            hire_date=hire_date,
            hr_status=hr_status,
            termination_date=termination,
            preprovisioned=preprovisioned,
            is_manager=is_manager,
        )
        people.append(person)
        if is_manager:
            managers_by_department[department].append(person.id)
    return people


def username_for(person: Person) -> str:
    first = person.first_name.lower()
    last = person.last_name.lower().replace("ü", "ue")
    return f"{first}.{last}.{person.external_id[1:]}@example.com"


def _user_rows(people: list[Person], now: str) -> Iterator[tuple]:
    for p in people:
        username = username_for(p)
        yield (
            p.id,
            username,
            department_id(p.department),
            p.first_name,
            p.last_name,
            username,
            p.external_id,
            p.external_id[1:],
            p.job_title,
            p.location,
            to_iso(p.hire_date),
            to_iso(p.termination_date),
            p.supervisor_id,
            1 if p.hr_status == "terminated" else 0,
            to_iso(p.hire_date - timedelta(days=14)),
            now,
            p.hr_status,
            int(p.preprovisioned),
        )


def _courses_for(
    person: Person, by_name: dict[str, Course], extra: list[Course], today: date, rng: random.Random
) -> list[Course]:
    """The courses a seeded person is enrolled in (compliance by attributes, plus electives)."""
    chosen = [
        by_name[n]
        for n in ("Code of Conduct", "Information Security Awareness", "Anti-Harassment Training")
        if rng.random() < 0.92
    ]
    if person.department == "Operations" or rng.random() < 0.15:
        chosen.append(by_name["Workplace Safety"])
    if person.is_manager:
        chosen += [by_name["Manager Essentials"], by_name[MULTI_SESSION_ILC]]
    if rng.random() < 0.6:
        chosen.append(by_name["Data Privacy (GDPR)"])
    if person.department == "Sales":
        chosen.append(by_name["Sales Compliance"])
    if (today - person.hire_date).days < 365:
        chosen.append(by_name[NEW_HIRE_ILC])
    if rng.random() < 0.05:
        chosen.append(by_name[rng.choice(EXTRA_ILCS)])
    if extra:
        chosen += rng.sample(extra, min(len(extra), rng.randint(2, 9)))
    return chosen


_EPOCH = datetime(1970, 1, 1)
_DAY = 86_400
_PRIME = 2_147_483_647  # 2**31 - 1: products of two residues stay inside SQLite's 64-bit integers

ENROLLMENT_COLUMNS = (
    "id, user_id, course_id, status, progress, score, time_spent_ticks, date_added, date_started, "
    "date_completed, date_expires, date_due, date_edited, access_date, course_version_id, "
    "accepted_terms, enrollment_key_id, certificate_id, credits, is_active, course_collection_id, "
    "activities_ready"
)


def _pair_rows(
    people: list[Person], courses: list[Course], today: date, anchor_epoch: int, rng: random.Random
) -> Iterator[tuple]:
    """(user id, course index, earliest enrollment epoch, span seconds) per enrollment to create.

    Python only decides who is enrolled in what; ``_ENROLLMENTS_SQL`` derives every other column
    in SQL, which is what keeps the ``large`` seed fast."""
    index_of = {course.id: number for number, course in enumerate(courses)}
    by_name = {c.name: c for c in courses[:NAMED_COURSE_COUNT]}
    extra = courses[NAMED_COURSE_COUNT:]
    earliest_day = today - timedelta(days=720)
    for person in people:
        if person.preprovisioned:
            continue
        start_day = max(person.hire_date, earliest_day)
        base = (start_day - _EPOCH.date()).days * _DAY
        span = max(0, anchor_epoch - 3600 - base)
        for course in _courses_for(person, by_name, extra, today, rng):
            yield person.id, index_of[course.id], base, span


def _random_sql(salt: int) -> str:
    """A deterministic pseudo-random integer in [0, 2**31-1) from the pair's rowid ``r`` and a salt."""
    first = f"((r * 2654435761 + {salt * 97531}) % {_PRIME})"
    return f"(((({first} * {first}) % {_PRIME}) * 48271 + {salt}) % {_PRIME})"


def _guid_sql(a: int, b: int, c: int, unique: str) -> str:
    """A GUID-shaped text whose last group encodes ``unique`` (so ids cannot collide)."""
    return (
        f"printf('%08x-%04x-4%03x-%04x-%012x', {_random_sql(a)}, {_random_sql(b)} % 65536, "
        f"{_random_sql(c)} % 4096, 32768 + ({_random_sql(a + c)} % 16384), {unique})"
    )


def _status_sql() -> str:
    cumulative = list(itertools.accumulate(STATUS_WEIGHTS.values()))
    total = cumulative[-1]
    cases = " ".join(
        f"WHEN roll < {int(_PRIME * bound / total)} THEN {status}"
        for status, bound in zip(STATUS_WEIGHTS, cumulative, strict=True)
    )
    return f"CASE {cases} ELSE 3 END"


def _stamp(column: str) -> str:
    return f"strftime('%Y-%m-%dT%H:%M:%S.000000Z', {column}, 'unixepoch')"


# Layer 1 draws the status and randoms, layer 2 turns them into epochs (never after the anchor;
# only Complete has a completion date), the outer select formats; rows come out grouped by course.
_ENROLLMENTS_SQL = f"""
INSERT INTO enrollments ({ENROLLMENT_COLUMNS})
SELECT {_guid_sql(11, 12, 13, "r * 2")}, user_id, course_id, status, progress, score, ticks,
       {_stamp("enrolled")}, {_stamp("started")}, {_stamp("completed")}, NULL,
       CASE WHEN due_roll % 2 = 0 THEN {_stamp("enrolled + 30 * 86400")} END,
       {_stamp("COALESCE(completed, started, enrolled)")}, NULL, NULL, 0, NULL,
       CASE WHEN status = 3 THEN {_guid_sql(21, 22, 23, "r")} END, NULL, 1, NULL, 0
FROM (
  SELECT r, user_id, course_id, course_idx, status, enrolled, due_roll,
         CASE WHEN started IS NOT NULL THEN (60 + tick_roll % 21600) * 10000000 + tick_roll % 10000000 ELSE 0 END
           AS ticks,
         CASE WHEN status = 3 THEN 100.0 WHEN started IS NOT NULL THEN 5.0 + progress_roll % 90 ELSE 0.0 END
           AS progress,
         CASE WHEN status = 3 THEN 70.0 + score_roll % 31 WHEN status IN (5, 7, 12) THEN 20.0 + score_roll % 60 END
           AS score,
         started, CASE WHEN status = 3 THEN MIN(started + complete_roll % (20 * 86400), :anchor) END AS completed
  FROM (
    SELECT r, user_id, course_id, course_idx, status, enrolled, due_roll, tick_roll, progress_roll, score_roll,
           complete_roll,
           CASE WHEN status NOT IN (0, 2, 6, 8) THEN MIN(enrolled + start_roll % (30 * 86400), :anchor - 60) END
             AS started
    FROM (
      SELECT p.r AS r, p.user_id AS user_id, c.id AS course_id, p.course_idx AS course_idx,
             {_status_sql().replace("roll", _random_sql(1))} AS status,
             MIN(p.base + {_random_sql(2)} % (p.span + 1), :anchor - 3600) AS enrolled,
             {_random_sql(3)} AS start_roll, {_random_sql(4)} AS complete_roll, {_random_sql(5)} AS tick_roll,
             {_random_sql(6)} AS progress_roll, {_random_sql(7)} AS score_roll, {_random_sql(8)} AS due_roll
      FROM _seed_sorted p JOIN _seed_courses c ON c.idx = p.course_idx
    )
  )
)
"""

# ~3 % of online enrollments also have an older, completed, historical (isActive=false) one.
_HISTORY_SQL = f"""
INSERT INTO enrollments ({ENROLLMENT_COLUMNS})
SELECT {_guid_sql(31, 32, 33, "r * 2 + 1")}, user_id, course_id, 3, 100.0, 85.0, 36000000000,
       {_stamp("enrolled")}, {_stamp("enrolled + 86400")}, {_stamp("enrolled + 2 * 86400")}, NULL, NULL,
       {_stamp("enrolled + 2 * 86400")}, NULL, NULL, 0, NULL, NULL, NULL, 0, NULL, 0
FROM (
  SELECT p.r AS r, p.user_id AS user_id, c.id AS course_id, p.course_idx AS course_idx,
         MIN(p.base, :anchor - 400 * 86400) - 365 * 86400 - {_random_sql(10).replace("r *", "p.r *")} % (180 * 86400)
           AS enrolled
  FROM _seed_sorted p JOIN _seed_courses c ON c.idx = p.course_idx AND c.online = 1
)
WHERE {_random_sql(9)} % 100 < 3
"""

# Every ILC enrollment gets a session enrollment in one of the course's sessions.
_SESSION_ENROLLMENTS_SQL = f"""
INSERT INTO session_enrollments
SELECT {_guid_sql(41, 42, 43, "r")}, id, session_id, user_id, course_id, status, progress, score,
       time_spent_ticks, date_added, date_started, date_completed, date_edited
FROM (
  SELECT e.rowid AS r, e.id AS id, s.id AS session_id, e.user_id AS user_id, e.course_id AS course_id,
         e.status AS status, e.progress AS progress, e.score AS score, e.time_spent_ticks AS time_spent_ticks,
         e.date_added AS date_added, e.date_started AS date_started, e.date_completed AS date_completed,
         e.date_edited AS date_edited
  FROM enrollments e
  JOIN _seed_courses c ON c.id = e.course_id AND c.online = 0
  JOIN _seed_sessions s ON s.course_idx = c.idx AND s.position = 1 + (e.rowid * 7919) % c.sessions
)
"""


def _load_enrollments(
    conn: sqlite3.Connection,
    people: list[Person],
    courses: list[Course],
    today: date,
    anchor_epoch: int,
    rng: random.Random,
) -> None:
    conn.execute(
        "CREATE TEMP TABLE _seed_pairs (r INTEGER PRIMARY KEY, user_id TEXT, course_idx INTEGER, "
        "base INTEGER, span INTEGER)"
    )
    conn.execute(
        "CREATE TEMP TABLE _seed_courses (idx INTEGER PRIMARY KEY, id TEXT, online INTEGER, sessions INTEGER)"
    )
    conn.execute("CREATE TEMP TABLE _seed_sessions (course_idx INTEGER, position INTEGER, id TEXT)")
    conn.executemany(
        "INSERT INTO _seed_courses VALUES (?, ?, ?, ?)",
        [
            (number, c.id, int(c.course_type == "OnlineCourse"), c.sessions)
            for number, c in enumerate(courses)
        ],
    )
    conn.executemany(
        "INSERT INTO _seed_sessions VALUES (?, ?, ?)",
        [
            (number, position, session_id(c.name, position))
            for number, c in enumerate(courses)
            for position in range(1, c.sessions + 1)
        ],
    )
    conn.executemany(
        "INSERT INTO _seed_pairs (user_id, course_idx, base, span) VALUES (?, ?, ?, ?)",
        _pair_rows(people, courses, today, anchor_epoch, rng),
    )
    # Sort the narrow pairs by course once, so the wide enrollment rows are written grouped by course
    # (a course's page then reads contiguous table pages) without sorting the wide rows.
    conn.execute("CREATE TEMP TABLE _seed_sorted AS SELECT * FROM _seed_pairs ORDER BY course_idx, r")
    conn.execute(_HISTORY_SQL, {"anchor": anchor_epoch})
    conn.execute(_ENROLLMENTS_SQL, {"anchor": anchor_epoch})
    conn.execute(_SESSION_ENROLLMENTS_SQL)
    for table in ("_seed_pairs", "_seed_sorted", "_seed_courses", "_seed_sessions"):
        conn.execute(f"DROP TABLE temp.{table}")


def _catalogue_rows(courses: list[Course], now: str, today: date) -> tuple[list, list, list, list]:
    course_rows, chapter_rows, lesson_rows, session_rows = [], [], [], []
    for number, course in enumerate(courses):
        course_rows.append(
            (
                course.id,
                course.name,
                course.course_type,
                0,
                f"{course.name} ({course.course_type})",
                f"C{number + 1:04d}",
                to_iso(today - timedelta(days=900 - number)),
                now,
                int(course.multi_session),
            )
        )
        for chapter in range(1, course.chapters + 1):
            chapter_rows.append((chapter_id(course.name, chapter), course.id, f"Chapter {chapter}", chapter))
            for lesson in range(1, course.lessons_per_chapter + 1):
                lesson_rows.append(
                    (
                        lesson_id(course.name, chapter, lesson),
                        course.id,
                        chapter_id(course.name, chapter),
                        f"Lesson {chapter}.{lesson}",
                        LESSON_TYPES[(chapter + lesson) % len(LESSON_TYPES)],
                        (chapter - 1) * course.lessons_per_chapter + lesson,
                    )
                )
        for session in range(1, course.sessions + 1):
            session_rows.append(
                (
                    session_id(course.name, session),
                    course.id,
                    f"Session {session}",
                    to_iso(today + timedelta(days=7 * session)),
                )
            )
    return course_rows, chapter_rows, lesson_rows, session_rows


def seed_database(
    conn: sqlite3.Connection, size: str, *, api_username: str, anchor: datetime | None = None
) -> dict[str, int]:
    """Fill an empty store with the ``size`` organisation; returns row counts per table."""
    if size not in SEED_SIZES:
        raise ValueError(f"unknown seed {size!r}; choose one of {', '.join(SEED_SIZES)}")
    anchor = (anchor or datetime.now(UTC)).replace(microsecond=0)
    today = anchor.date()
    anchor_epoch = int(anchor.timestamp())
    rng = random.Random(f"absorb-sandbox:{size}")
    now = to_iso(anchor)
    store.create_schema(conn)
    store.bulk_load_mode(conn, True)
    conn.execute("BEGIN")
    try:
        conn.executemany(
            "INSERT INTO departments VALUES (?, ?, ?)",
            [(department_id(d), d, department_external_id(d)) for d in DEPARTMENTS],
        )
        courses = build_courses(size) if size != "none" else []
        course_rows, chapter_rows, lesson_rows, catalogue_sessions = _catalogue_rows(courses, now, today)
        conn.executemany("INSERT INTO courses VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", course_rows)
        conn.executemany("INSERT INTO chapters VALUES (?, ?, ?, ?)", chapter_rows)
        conn.executemany("INSERT INTO lessons VALUES (?, ?, ?, ?, ?, ?)", lesson_rows)
        conn.executemany("INSERT INTO sessions VALUES (?, ?, ?, ?)", catalogue_sessions)
        people = build_people(SEED_SIZES[size], rng, today)
        conn.executemany(f"INSERT INTO users VALUES ({', '.join('?' * 18)})", _user_rows(people, now))
        ensure_api_user(conn, api_username)
        _load_enrollments(conn, people, courses, today, anchor_epoch, rng)
        store.set_meta(conn, "seed", size)
        store.set_meta(conn, "anchor", anchor.isoformat())
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    store.create_indices(conn)
    store.bulk_load_mode(conn, False)
    return {
        table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        for table in ("users", "courses", "enrollments", "session_enrollments")
    }


def ensure_api_user(conn: sqlite3.Connection, username: str) -> str:
    """Make sure the API user exists (it is a user of the portal too); returns its id."""
    row = conn.execute("SELECT id FROM users WHERE username = ?", (username,)).fetchone()
    if row:
        return row[0]
    new_id = api_user_id(username)
    now = to_iso(datetime.now(UTC))
    conn.execute(
        "INSERT INTO users (id, username, department_id, first_name, last_name, email, job_title, "
        "location, active_status, date_added, date_edited, hr_status, preprovisioned) "
        "VALUES (?, ?, ?, 'Airflow', 'Integration', NULL, 'Integration Account', NULL, 0, ?, ?, 'active', 0)",
        (new_id, username, department_id("Operations"), now, now),
    )
    return new_id
