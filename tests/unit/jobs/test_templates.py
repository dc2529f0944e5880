"""Templates over the slot, the parameters and earlier outputs."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from sparkjobs.execution.templates import TemplateContext, TemplateError, output_text, render

SLOT = datetime(2026, 3, 2, 6, 0, tzinfo=UTC).astimezone(ZoneInfo("Europe/Berlin"))


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Briefing for {params.city} on {slot:%A %d %B, %H:%M}",
         "Briefing for Berlin on Monday 02 March, 07:00"),
        ("{params[city]}", "Berlin"),
        ("Read this: {previous}", "Read this: second"),
        ("{outputs[0]} then {outputs[1]}", "first then second"),
        ("literal {{braces}}", "literal {braces}"),
        ("{params.days} days", "3 days"),
    ],
)  # fmt: skip
def test_templates_see_slot_params_previous_and_outputs(template: str, expected: str) -> None:
    context = TemplateContext(SLOT, {"city": "Berlin", "days": 3}, ("first", "second"))
    assert render(template, context) == expected


def test_an_output_with_braces_is_inserted_not_parsed() -> None:
    context = TemplateContext(SLOT, {}, ("{params.secret} {0}",))
    assert render("Say: {previous}", context) == "Say: {params.secret} {0}"


def test_previous_of_a_first_step_is_empty() -> None:
    assert render("[{previous}]", TemplateContext(SLOT)) == "[]"


def test_unknown_parameter_names_it_and_lists_the_known_ones() -> None:
    context = TemplateContext(SLOT, {"city": "Berlin", "days": 3})
    with pytest.raises(TemplateError, match=r"briefing.py:4: unknown parameter 'town'.*city, days"):
        render("{params.town}", context, where="briefing.py:4")


def test_unknown_field_says_what_a_template_can_use() -> None:
    with pytest.raises(TemplateError, match=r"unknown field \{when\}.*\{slot\}"):
        render("{when}", TemplateContext(SLOT))


def test_an_output_of_a_step_that_has_not_run_is_an_error() -> None:
    with pytest.raises(TemplateError, match="1 earlier output"):
        render("{outputs[3]}", TemplateContext(SLOT, {}, ("only",)))


def test_a_malformed_template_is_an_error_that_explains_braces() -> None:
    with pytest.raises(TemplateError, match="literal braces"):
        render("{unclosed", TemplateContext(SLOT))


def test_json_outputs_render_as_json() -> None:
    assert output_text(None, {"b": 1, "a": "x"}) == '{"a": "x", "b": 1}'
    assert output_text("text wins", {"a": 1}) == "text wins"
    assert output_text(None, None) == ""
