"""A trip booked as a saga: a hotel, a flight, then a car that cannot be booked.

Each booking and each cancellation is counted (`effects`); the hotel's cancellation
also counts how many flight cancellations it saw, which shows the order (newest
first). With `kill_while_compensating`, the first worker that cancels the hotel is
SIGKILLed before it does (after the flight's cancellation was checkpointed).
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from effects import count_blocking, counted

import durakube


def cancel_hotel(hotel: dict[str, Any], run_id: str, city: str, kill: bool) -> None:
    if kill and counted(run_id, "killed") == 0:
        count_blocking(run_id, "killed")
        os.kill(os.getpid(), signal.SIGKILL)
    flights_cancelled = counted(run_id, "cancel-flight")
    count_blocking(run_id, f"cancel-hotel-after-{flights_cancelled}-flight-cancellations")
    count_blocking(run_id, f"cancel-hotel:{hotel['hotel']}")


def cancel_flight(run_id: str, flight: str) -> None:
    count_blocking(run_id, "cancel-flight")
    count_blocking(run_id, f"cancel-flight:{flight}")


@durakube.step(compensate=cancel_hotel)
async def reserve_hotel(run_id: str, city: str, kill: bool) -> dict[str, Any]:
    await asyncio.to_thread(count_blocking, run_id, "reserve-hotel")
    return {"hotel": f"hotel-{city}"}


def reserve_flight(run_id: str, city: str) -> str:
    count_blocking(run_id, "reserve-flight")
    return f"flight-{city}"


def reserve_car(run_id: str, city: str) -> str:
    count_blocking(run_id, "reserve-car")
    raise durakube.PermanentError(f"no car left in {city}")


@durakube.task(id="book-trip")
async def book_trip(ctx: durakube.TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    city = payload["city"]
    hotel = await reserve_hotel(ctx.run_id, city, bool(payload.get("kill_while_compensating")))
    flight = await ctx.step("reserve-flight", reserve_flight, ctx.run_id, city)
    await ctx.compensate(cancel_flight, ctx.run_id, flight)
    car = await ctx.step("reserve-car", reserve_car, ctx.run_id, city)
    return {"hotel": hotel, "flight": flight, "car": car}
