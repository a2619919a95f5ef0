"""A saga: book a hotel, buy a flight, rent a car; if the trip cannot be completed,
undo what was done, newest first.

The hotel's undo is declared on its step (`@durakube.step(compensate=...)`), the
flight's registered after its step (`ctx.compensate(...)`). A car rental that fails
for good (no car left in the city) fails the run: the operator then runs the
recorded undos in an attempt of compensation mode, the refund first, then the hotel's
cancellation, each checkpointed, and the run ends Failed with the rental's error.

The "suppliers" are a table of the examples' own database (EXAMPLES_DATABASE_URL),
as in `approval`: each booking is a row, and each undo marks its row cancelled. Undos
take the booking's key, so one that runs again after a crash changes nothing.
"""

from __future__ import annotations

import os
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

import durakube

# Cities where every car is taken: renting there fails for good.
NO_CARS_LEFT = frozenset({"atlantis"})


class Trip(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    trip_id: str = Field(alias="tripId", pattern=r"^[a-z0-9-]{1,64}$")
    city: str = Field(pattern=r"^[a-z-]{1,64}$")
    fare: int = Field(gt=0)


async def _execute(sql: str, *args: Any) -> Any:
    connection = await asyncpg.connect(os.environ["EXAMPLES_DATABASE_URL"])
    try:
        async with connection.transaction():
            # CREATE ... IF NOT EXISTS races with itself in Postgres: serialise concurrent runs.
            await connection.execute("SELECT pg_advisory_xact_lock(hashtext('examples'))")
            await connection.execute("CREATE SCHEMA IF NOT EXISTS examples")
            await connection.execute("""
                CREATE TABLE IF NOT EXISTS examples.trip_bookings (
                    booking       text PRIMARY KEY,
                    trip_id       text NOT NULL,
                    kind          text NOT NULL,
                    amount        integer,
                    booked_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
                    cancelled_at  timestamptz)""")
            return await connection.fetchval(sql, *args)
    finally:
        await connection.close()


async def _book(trip_id: str, kind: str, amount: int | None = None) -> str:
    booking = f"{trip_id}:{kind}"
    await _execute("""
        INSERT INTO examples.trip_bookings (booking, trip_id, kind, amount)
        VALUES ($1, $2, $3, $4) ON CONFLICT (booking) DO NOTHING""",
        booking, trip_id, kind, amount)
    return booking


async def _cancel(booking: str) -> None:
    # Idempotent: a second cancellation keeps the first one's time.
    await _execute("""
        UPDATE examples.trip_bookings SET cancelled_at = clock_timestamp()
        WHERE booking = $1 AND cancelled_at IS NULL""", booking)


async def cancel_hotel(hotel: dict[str, str], trip_id: str, city: str) -> None:
    """The undo of `book_hotel`: its result first, then the step's own arguments."""
    await _cancel(hotel["booking"])


async def refund_flight(ticket: str, *, amount: int) -> None:
    await _cancel(ticket)
    print(f"refunded {amount} for {ticket}")


@durakube.step(compensate=cancel_hotel)
async def book_hotel(trip_id: str, city: str) -> dict[str, str]:
    return {"booking": await _book(trip_id, "hotel"), "city": city}


@durakube.step
async def buy_flight(trip_id: str, fare: int) -> str:
    return await _book(trip_id, "flight", fare)


@durakube.step
async def rent_car(trip_id: str, city: str) -> str:
    if city in NO_CARS_LEFT:
        raise durakube.PermanentError(f"no car left in {city}")
    return await _book(trip_id, "car")


@durakube.task(id="book-trip", timeout="5m")
async def book_trip(ctx: durakube.TaskContext, payload: Trip) -> dict[str, Any]:
    hotel = await book_hotel(payload.trip_id, payload.city)
    ticket = await buy_flight(payload.trip_id, payload.fare)
    await ctx.compensate(refund_flight, ticket, amount=payload.fare)
    car = await rent_car(payload.trip_id, payload.city)
    return {"hotel": hotel["booking"], "flight": ticket, "car": car}
