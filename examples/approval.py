"""An approval workflow: generate -> send for approval -> wait (up to 7 days,
holding no pod) -> publish or reject.

The wait is a waitpoint token: `send_for_approval` hands the token to a person
(here it records the request and the approval URL in Postgres); whoever
approves completes the token through the Python client, a `TaskEvent`, or the
operator's webhook, and the run resumes in a new pod with the answer.
"""

from __future__ import annotations

import os
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

import durakube


class ReportInput(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    report_id: str = Field(alias="reportId", pattern=r"^[a-z0-9-]{1,64}$")


async def _execute(sql: str, *args: Any) -> None:
    # The task's own database, not Durakube's: the worker's login there can only
    # checkpoint this run (see the README, "Tenant isolation").
    connection = await asyncpg.connect(os.environ["EXAMPLES_DATABASE_URL"])
    try:
        # CREATE ... IF NOT EXISTS races with itself in Postgres: serialise concurrent runs.
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock(hashtext('examples'))")
            await connection.execute("CREATE SCHEMA IF NOT EXISTS examples")
            await connection.execute("""
                CREATE TABLE IF NOT EXISTS examples.reports (
                    report_id     text PRIMARY KEY,
                    title         text NOT NULL,
                    token         text,
                    approval_url  text,
                    state         text NOT NULL,
                    updated_at    timestamptz NOT NULL DEFAULT now())""")
        await connection.execute(sql, *args)
    finally:
        await connection.close()


@durakube.step
async def generate_report(report_id: str) -> dict[str, str]:
    title = f"Report {report_id}"
    await _execute("""
        INSERT INTO examples.reports (report_id, title, state) VALUES ($1, $2, 'draft')
        ON CONFLICT (report_id) DO UPDATE SET title = EXCLUDED.title, updated_at = now()""",
        report_id, title)
    return {"id": report_id, "title": title}


@durakube.step
async def send_for_approval(report: dict[str, str], token: str) -> None:
    base = os.environ.get("DURAKUBE_WEBHOOK_URL", "http://durakube-operator:8082")
    url = f"{base}/v1/tokens/{token}/complete"
    await _execute("""
        UPDATE examples.reports SET token = $2, approval_url = $3, state = 'awaiting-approval',
                                    updated_at = now() WHERE report_id = $1""",
        report["id"], token, url)
    # The URL holds the token, which approves: it goes to the approver, never to the logs
    # nor to the step's result (which `durakube steps` shows).
    print(f"approval requested for {report['title']}: its approval URL is in examples.reports")


@durakube.step
async def publish_report(report: dict[str, str]) -> None:
    await _execute("UPDATE examples.reports SET state = 'published', updated_at = now()"
                   " WHERE report_id = $1", report["id"])


@durakube.task(id="approval-workflow", timeout="10m")
async def approval_workflow(ctx: durakube.TaskContext, payload: ReportInput) -> dict[str, Any]:
    report = await generate_report(payload.report_id)
    token = await ctx.create_token(timeout="7d")
    await send_for_approval(report, token)
    try:
        approval = await ctx.wait_for_token(token)
    except durakube.WaitTimedOut:
        return {"status": "expired", "reportId": payload.report_id}
    approved = bool((approval or {}).get("approved"))
    if approved:
        await publish_report(report)
    return {"status": "published" if approved else "rejected", "reportId": payload.report_id}
