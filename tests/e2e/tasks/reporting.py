"""A task with the shape of a real one, for the dashboard's tests: several steps, a
retried failure, a durable sleep that suspends, then the last step."""

from __future__ import annotations

import asyncio
from typing import Any

import durakube


@durakube.task(id="monthly-report", retry=durakube.Retry(max_attempts=3, min_timeout=1,
                                                         max_timeout=2, randomize=False))
async def monthly_report(ctx: durakube.TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Attempt 1 fails (retryable) after two steps; attempt 2 renders, then sleeps long
    enough to suspend; attempt 3 sends the report. Earlier steps replay each time."""

    async def fetch_orders() -> dict[str, Any]:
        await asyncio.sleep(0.4)
        return {"month": payload.get("month", "2026-10"), "orders": 1284}

    async def sum_totals(orders: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0.2)
        return {"orders": orders["orders"], "revenue": 48211.5}

    async def render_pdf(totals: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0.6)
        return {"pages": 12, "bytes": 482113}

    async def email_report(document: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0.3)
        return {"to": payload.get("to", "finance@example.com"), "pages": document["pages"]}

    orders = await ctx.step("fetch_orders", fetch_orders)
    totals = await ctx.step("sum_totals", sum_totals, orders)
    if ctx.attempt == 1:
        raise durakube.RetryableError("the warehouse API answered 503 Service Unavailable")
    document = await ctx.step("render_pdf", render_pdf, totals)
    await ctx.sleep(payload.get("cool_down", "4s"))
    sent = await ctx.step("email_report", email_report, document)
    return {"month": orders["month"], "revenue": totals["revenue"], "sentTo": sent["to"]}


@durakube.task(id="approve-invoice")
async def approve_invoice(ctx: durakube.TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Waits for a person's decision on a waitpoint token (kept out of logs and status)."""
    token = await ctx.create_token(timeout=payload.get("timeout", "1h"))
    decision = await ctx.wait_for_token(token)
    return {"invoice": payload.get("invoice"), "decision": decision}
