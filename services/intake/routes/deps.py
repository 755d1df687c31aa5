"""What routes depend on: the caller's role, and the service of the intake they call.

Each is `async`: FastAPI runs a plain function dependency in its thread pool, a
thread hop per dependency per request."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.intake.admin import Admin
from services.intake.auth import grant_of, requires
from services.intake.bootstrap import Intake
from services.intake.braincloud.client import ClientDoor
from services.intake.braincloud.servers import ServerDoor
from services.intake.bulk import Bulk
from services.intake.generation import Generation
from services.intake.paging import Contexts
from services.intake.queries import Queries
from services.intake.redemptions import Redeemer
from shared.domain.access import Grant
from shared.service.attempt_outcomes import AttemptOutcomes
from shared.service.failure_budget import FailureBudget

AdminRole = Annotated[str, Depends(requires("admin"))]
RedeemRole = Annotated[str, Depends(requires("redeem"))]
PartnerRole = Annotated[str, Depends(requires("fulfillment"))]
# What the caller's key reaches, for a route that lists or looks up several campaigns' records.
GrantDep = Annotated[Grant, Depends(grant_of)]


async def intake_of(request: Request) -> Intake:
    intake: Intake = request.app.state.intake
    return intake


IntakeDep = Annotated[Intake, Depends(intake_of)]


async def _admin(intake: IntakeDep) -> Admin:
    return intake.admin


async def _bulk(intake: IntakeDep) -> Bulk:
    return intake.bulk


async def _generation(intake: IntakeDep) -> Generation:
    return intake.generation


async def _queries(intake: IntakeDep) -> Queries:
    return intake.queries


async def _redeemer(intake: IntakeDep) -> Redeemer:
    return intake.redeemer


async def _attempts(intake: IntakeDep) -> AttemptOutcomes:
    return intake.attempts


async def _contexts(intake: IntakeDep) -> Contexts:
    return intake.contexts


async def _budget(intake: IntakeDep) -> FailureBudget:
    return intake.budget


async def _client_door(intake: IntakeDep) -> ClientDoor:
    return intake.client_door


async def _server_door(intake: IntakeDep) -> ServerDoor:
    return intake.server_door


AdminDep = Annotated[Admin, Depends(_admin)]
BulkDep = Annotated[Bulk, Depends(_bulk)]
GenerationDep = Annotated[Generation, Depends(_generation)]
QueriesDep = Annotated[Queries, Depends(_queries)]
RedeemerDep = Annotated[Redeemer, Depends(_redeemer)]
AttemptsDep = Annotated[AttemptOutcomes, Depends(_attempts)]
ContextsDep = Annotated[Contexts, Depends(_contexts)]
BudgetDep = Annotated[FailureBudget, Depends(_budget)]
ClientDoorDep = Annotated[ClientDoor, Depends(_client_door)]
ServerDoorDep = Annotated[ServerDoor, Depends(_server_door)]
