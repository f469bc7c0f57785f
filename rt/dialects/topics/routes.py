"""The topics dialect's REST route: which topics have data now, so a client need not guess.

GET /api/v1/topics   {"topics": ["stock.AAPL.1m", ...], "types": [...], "intervals": [...]}
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter
from pydantic import BaseModel, Field

from rt.dialects.topics.names import INTERVALS, TYPES, client_topic
from rt.topics import CANDLE_PREFIX, SUMMARY_PREFIX

if TYPE_CHECKING:
    from rt.server import Server


class TopicList(BaseModel):
    topics: list[str] = Field(description="every topic that can be subscribed to now, sorted")
    types: list[str] = Field(description="the valid types")
    intervals: list[str] = Field(description="the valid intervals")


def routes(server: Server) -> APIRouter:
    router = APIRouter(tags=["topics"])

    @router.get("/api/v1/topics", response_model=TopicList)
    async def topics() -> TopicList:
        """The topics of the topics dialect (``/api/v1/ws/{client_id}``) that have data."""
        engine = server.engine
        names = [
            client_topic(t)
            for t in engine.topics()
            if t.startswith((CANDLE_PREFIX, SUMMARY_PREFIX)) and engine.position(t)[1] > 0
        ]
        return TopicList(topics=sorted(names), types=list(TYPES), intervals=list(INTERVALS))

    return router
