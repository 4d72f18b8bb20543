"""Experiment assignments (one unit, or a batch) for apps, and experiment results for analysts.

``GET /v1/experiments/{key}/assignment``, ``POST /v1/experiments/{key}/assignments`` and
``GET /v1/experiments/{key}/results``. An enrolled unit's exposure is committed to the exposure log before
the answer leaves. Results are the ``userops experiments analyze --json`` document, read by the same
library calls from the data folder's ``exposures`` and ``events`` tables.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from experiments.options import AnalysisOptions
from experiments.service import analyze_folder, assign_unit_async, assign_units, require_readable
from serving.deps import (
    AnalystCaller,
    AppCaller,
    DataDirDep,
    ExperimentStoreDep,
    ExposureLogDep,
    designs_of,
    exposures_of,
)
from serving.params import ID_PATTERN, KeyPath, UnitIdQuery

router = APIRouter(prefix="/v1/experiments", tags=["experiments"])

MAX_UNITS = 1_000
"""Units in one batch request."""
MAX_ATTRIBUTES = 50
"""Attributes of one unit."""
ATTRIBUTE_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
"""What a targeting rule can name (see ``experiments.assignment.Rule.parse``)."""

UnitId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=ID_PATTERN)]
AttributeName = Annotated[str, StringConstraints(pattern=ATTRIBUTE_NAME)]
ATTRIBUTE_TEXT = r"^[^\x00-\x1f\x7f]{0,256}$"
"""An attribute's text value: up to 256 characters, no control characters."""

AttributeText = Annotated[str, StringConstraints(pattern=ATTRIBUTE_TEXT)]
AttributeValue = AttributeText | int | Annotated[float, Field(allow_inf_nan=False)] | bool | None
MetricName = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=ID_PATTERN)]


class Assignment(BaseModel):
    """One unit's variant, and why."""

    experiment: str = Field(examples=["promo"])
    unit_id: str = Field(examples=["u000042"])
    variant: str | None = Field(
        description="The variant to show; null when the unit is not enrolled.", examples=["treatment"]
    )
    reason: str = Field(
        description="`assigned`, or why not: `holdout`, `not_targeted`, `outside_layer`, `not_covered`.",
        examples=["assigned"],
    )


class UnitAssignment(BaseModel):
    """One unit of a batch: its variant, and why."""

    unit_id: str = Field(examples=["u000042"])
    variant: str | None = Field(description="Null when the unit is not enrolled.", examples=["treatment"])
    reason: str = Field(examples=["assigned"])


class Unit(BaseModel):
    """A unit to assign, with the attributes the experiment's targeting rules read."""

    model_config = ConfigDict(extra="forbid")

    unit_id: UnitId = Field(examples=["u000042"])
    attributes: dict[AttributeName, AttributeValue] = Field(
        default_factory=dict,
        max_length=MAX_ATTRIBUTES,
        description="Attribute name → value (text, number, boolean) for targeting; none by default.",
        examples=[{"country": "FR", "tenure_days": 45}],
    )


class AssignmentsRequest(BaseModel):
    """Up to 1,000 units to assign in one call."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "units": [
                        {"unit_id": "u000042", "attributes": {"country": "FR"}},
                        {"unit_id": "u000043"},
                    ]
                }
            ]
        },
    )

    units: list[Unit] = Field(min_length=1, max_length=MAX_UNITS)


class Assignments(BaseModel):
    """Every unit's assignment, in the order asked."""

    experiment: str = Field(examples=["promo"])
    assignments: list[UnitAssignment] = Field(
        examples=[
            [
                {"unit_id": "u000042", "variant": "treatment", "reason": "assigned"},
                {"unit_id": "u000043", "variant": None, "reason": "not_targeted"},
            ]
        ]
    )


class ResultRow(BaseModel):
    """One metric for one variant; the control's rows have the effect fields null."""

    metric: str = Field(examples=["conversion"])
    variant: str = Field(examples=["treatment"])
    n: int = Field(description="Units in the variant.", examples=[1042])
    mean: float | None = Field(examples=[0.124])
    diff_abs: float | None = Field(description="Mean minus the control's mean.", examples=[0.018])
    diff_rel: float | None = Field(description="diff_abs / the control's mean.", examples=[0.17])
    ci_low: float | None = Field(description="Lower end of the interval for diff_abs.", examples=[0.002])
    ci_high: float | None = Field(description="Upper end of the interval for diff_abs.", examples=[0.034])
    p_value: float | None = Field(examples=[0.027])


class ExperimentResults(BaseModel):
    """The ``userops experiments analyze --json`` document."""

    experiment: str = Field(examples=["promo"])
    srm_p_value: float | None = Field(
        description="Sample-ratio check against the store's shares (equal shares when not in the store).",
        examples=[0.61],
    )
    results: list[ResultRow]


def _query_attributes(query: Mapping[str, str], repeated: list[str]) -> dict[str, str]:
    """The unit's attributes from every query parameter besides ``unit_id``; a bad one is a 422."""
    problems: list[dict[str, Any]] = []
    attributes: dict[str, str] = {}
    for name, value in query.items():
        if name == "unit_id":
            continue
        where = ("query", name)
        if not re.fullmatch(ATTRIBUTE_NAME, name):
            message = "an attribute name is a letter or _ then up to 63 letters, digits or _"
        elif name in repeated:
            message = "an attribute is given once"
        elif not re.fullmatch(ATTRIBUTE_TEXT, value):
            message = "an attribute value is up to 256 characters, no control characters"
        else:
            attributes[name] = value
            continue
        problems.append({"type": "value_error", "loc": where, "msg": message, "input": value})
    if len(attributes) > MAX_ATTRIBUTES:
        message = f"at most {MAX_ATTRIBUTES} attributes"
        problems.append({"type": "too_long", "loc": ("query",), "msg": message, "input": None})
    if problems:
        raise RequestValidationError(problems)
    return attributes


ATTRIBUTES_PARAMETER = {
    "name": "attributes",
    "in": "query",
    "required": False,
    "style": "form",
    "explode": True,
    "schema": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 256}},
    "description": "Any further query parameter is a unit attribute for the experiment's targeting rules, "
    "e.g. `&country=FR&tenure_days=45` (each given once).",
    "example": {"country": "FR", "tenure_days": "45"},
}


@router.get(
    "/{key}/assignment",
    summary="The variant of one unit; its exposure is logged before the answer.",
    openapi_extra={"parameters": [ATTRIBUTES_PARAMETER]},
    responses={
        404: {"description": "No experiment with this key."},
        409: {"description": "The experiment is a draft or stopped."},
    },
)
async def assignment(
    key: KeyPath,
    unit_id: UnitIdQuery,
    request: Request,
    _: AppCaller,
) -> Assignment:
    # a coroutine: the design is in memory, and the exposure's commit is awaited, not held by a thread
    params = request.query_params
    repeated = [name for name in params if len(params.getlist(name)) > 1]
    attributes = _query_attributes(params, repeated)
    variant, reason = await assign_unit_async(
        designs=designs_of(request),
        experiment=key,
        unit_id=unit_id,
        attributes=attributes,
        log=exposures_of(request),
    )
    return Assignment(experiment=key, unit_id=unit_id, variant=variant, reason=reason)


@router.post(
    "/{key}/assignments",
    summary="The variants of up to 1,000 units; their exposures are logged in one transaction first.",
    responses={
        404: {"description": "No experiment with this key."},
        409: {"description": "The experiment is a draft or stopped."},
    },
)
def assignments(
    key: KeyPath, body: AssignmentsRequest, store: ExperimentStoreDep, log: ExposureLogDep, _: AppCaller
) -> Assignments:
    ids = [unit.unit_id for unit in body.units]
    attributes = pd.DataFrame([unit.attributes for unit in body.units], index=range(len(ids)), dtype=object)
    frame = assign_units(store=store, experiment=key, unit_ids=ids, attributes=attributes, log=log)
    return Assignments(
        experiment=key,
        assignments=[
            UnitAssignment(unit_id=u, variant=v or None, reason=r)
            for u, v, r in zip(ids, frame["variant"], frame["reason"], strict=True)
        ],
    )


@router.get(
    "/{key}/results",
    summary="The experiment's read: effects, intervals, p-values, sample-ratio check (the analyze --json).",
    responses={
        404: {"description": "Neither the store nor the exposures know this key."},
        409: {"description": "A draft that never ran."},
        422: {"description": "An unknown metric, or data that cannot be analysed as asked."},
    },
)
def results(
    key: KeyPath,
    folder: DataDirDep,
    store: ExperimentStoreDep,
    _: AnalystCaller,
    metric: Annotated[
        list[MetricName] | None,
        Query(
            max_length=20,
            description="Primary metric, repeatable (default: the experiment's own, else conversion, "
            "revenue, orders): conversion, revenue, net_revenue, orders, revenue_per_order, any:EVENT, "
            "count:EVENT, retention:DAYS, ratio:A/B.",
            examples=[["conversion", "revenue"]],
        ),
    ] = None,
) -> ExperimentResults:
    require_readable(data_dir=folder, experiment=key, store=store)
    options = AnalysisOptions(metrics=tuple(metric or ()))
    read = analyze_folder(data_dir=folder, experiment=key, store=store, options=options)
    return ExperimentResults.model_validate(read.analysis.to_json())
