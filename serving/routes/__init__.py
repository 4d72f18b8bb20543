"""One router per resource; :data:`ROUTERS` is every one, in the order the API's schema lists them."""

from __future__ import annotations

from fastapi import APIRouter

from serving.routes import admin, events, experiments, offers, recommendations, risk, winback

ROUTERS: tuple[APIRouter, ...] = (
    risk.router,
    recommendations.router,
    offers.router,
    experiments.router,
    winback.router,
    events.router,
    admin.router,
)
