"""One router per resource; :data:`ROUTERS` is every one, in the order the API's schema lists them."""

from __future__ import annotations

from fastapi import APIRouter

from serving.routes import admin, recommendations

ROUTERS: tuple[APIRouter, ...] = (recommendations.router, admin.router)
