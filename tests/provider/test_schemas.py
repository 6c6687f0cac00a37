"""The shared response schemas: the provider refuses pages missing a field it relies on."""

from __future__ import annotations

import pytest
from absorb_provider import schemas
from absorb_provider.io import COURSE_ENROLLMENT_FIELDS
from absorb_provider.schemas import AbsorbSchemaError
from absorb_sandbox import seed

SAFETY = seed.course_id("Workplace Safety")


def test_the_export_columns_are_fields_of_the_enrollment_schema():
    """One definition: the columns the export streams are all known to the shared model."""
    assert {name for name, _ in COURSE_ENROLLMENT_FIELDS} <= set(schemas.CourseEnrollment.model_fields)


def test_row_problems_name_the_row_and_the_field():
    good = {"id": "d1", "name": "Sales"}
    assert schemas.row_problems(schemas.Department, [good]) == []
    problems = schemas.row_problems(schemas.Department, [good, {"id": "d2", "title": "Legal"}])
    assert problems == ["row 1: field 'name' is missing"]
    assert "field 'id'" in schemas.row_problems(schemas.Department, [{"id": None, "name": "x"}])[0]


def test_field_report_lists_unknown_and_missing_fields():
    rows = [{"id": "u1", "name": "A", "colour": "red"}, {"id": "u2", "colour": "blue"}]
    report = schemas.field_report(schemas.Department, rows)
    assert report == {"unknown": ["colour"], "missing_relied_on": ["name"], "missing_optional": []}


def test_the_hook_reads_pages_that_fit(hook_for, fresh_sandbox):
    hook = hook_for(fresh_sandbox)
    assert any(u["externalId"] for u in hook.list_users(page_size=100))
    assert list(hook.course_enrollment_tables(SAFETY))


def test_a_renamed_field_fails_the_read_naming_the_field(hook_for, fresh_sandbox):
    hook = hook_for(fresh_sandbox)
    hook.authenticate()
    fresh_sandbox.set_faults({"rename": ["externalId:employeeKey", "userId:learnerId"]})
    with pytest.raises(AbsorbSchemaError, match=r"/users answered rows .* field 'externalId' is missing"):
        list(hook.list_users())
    with pytest.raises(AbsorbSchemaError, match=r"field 'userId' is missing or null"):
        list(hook.course_enrollment_tables(SAFETY))
    with pytest.raises(AbsorbSchemaError, match=r"field 'userId' is missing"):
        list(hook.list_course_enrollments(SAFETY))
    assert list(hook.list_departments())  # lists without a renamed field still read


def test_columnar_reads_tell_a_renamed_field_from_a_null_one(hook_for, fresh_sandbox):
    """Arrow pages read an absent field as nulls: a relied-on column null in every row must be in
    the page as a key, so a renamed ``externalId`` fails the users read instead of matching nobody."""
    hook = hook_for(fresh_sandbox)
    columns = {"id": "string", "externalId": "string", "activeStatus": "int"}
    read = [page for page in hook.user_tables(columns)]
    assert sum(page.num_rows for page in read) > 1 and read[0].column("externalId").null_count <= 1
    hook.authenticate()
    fresh_sandbox.set_faults({"rename": ["externalId:employeeKey", "dateDue:dueOn"]})
    with pytest.raises(
        AbsorbSchemaError, match=r"/users answered .* field 'externalId' is missing from every row"
    ):
        list(hook.user_tables(columns))
    with pytest.raises(AbsorbSchemaError, match=r"field 'dateDue' is missing from every row"):
        list(hook.course_enrollment_tables(SAFETY))
    fresh_sandbox.set_faults({})
    assert list(hook.course_enrollment_tables(SAFETY))  # null due dates with the key present still read
