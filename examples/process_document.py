"""A document-processing task in four steps: fetch -> extract -> embed -> store.

Each awaited step is a checkpoint: if the pod dies after `extract_text`, the next
attempt replays fetch and extract from Postgres and starts at the embedding.

Runs anywhere the SDK runs: documents come from `documents/` beside this file (a
stand-in for a document service), the embedding is a 64-dimension hashing-trick
vector computed locally (a stand-in for an embedding API: same shape, no network),
and the result is upserted into Postgres, idempotently, keyed by document id.
"""

from __future__ import annotations

import hashlib
import html
import math
import os
import re
from pathlib import Path

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

import durakube

DOCUMENTS = Path(__file__).resolve().parent / "documents"
DIMENSIONS = 64


class DocumentInput(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    document_id: str = Field(alias="documentId", pattern=r"^[a-z0-9-]{1,64}$")


@durakube.step
async def fetch_document(document_id: str) -> dict[str, str]:
    path = DOCUMENTS / f"{document_id}.html"
    if not path.exists():
        # Retrying cannot make a missing document appear: a permanent error.
        raise durakube.PermanentError(f"document {document_id!r} does not exist")
    return {"id": document_id, "html": path.read_text()}


@durakube.step
async def extract_text(doc: dict[str, str]) -> str:
    text = re.sub(r"<[^>]+>", " ", doc["html"])
    return re.sub(r"\s+", " ", html.unescape(text)).strip()


@durakube.step
async def generate_embedding(text: str) -> list[float]:
    vector = [0.0] * DIMENSIONS
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        index = int.from_bytes(digest[:4], "big") % DIMENSIONS
        vector[index] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [round(x / norm, 6) for x in vector]


@durakube.step
async def store_embedding(document_id: str, embedding: list[float]) -> int:
    # The task's own database, not Durakube's: the worker's login there can only
    # checkpoint this run (see the README, "Tenant isolation").
    connection = await asyncpg.connect(os.environ["EXAMPLES_DATABASE_URL"])
    try:
        # CREATE ... IF NOT EXISTS races with itself in Postgres: serialise concurrent runs.
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock(hashtext('examples'))")
            await connection.execute("CREATE SCHEMA IF NOT EXISTS examples")
            await connection.execute("""
                CREATE TABLE IF NOT EXISTS examples.document_embeddings (
                    document_id text PRIMARY KEY,
                    embedding   double precision[] NOT NULL,
                    stored_at   timestamptz NOT NULL DEFAULT now())""")
        await connection.execute("""
            INSERT INTO examples.document_embeddings (document_id, embedding) VALUES ($1, $2)
            ON CONFLICT (document_id) DO UPDATE SET embedding = EXCLUDED.embedding,
                                                    stored_at = now()""",
            document_id, embedding)
    finally:
        await connection.close()
    return len(embedding)


@durakube.task(
    id="process-document",
    retry=durakube.Retry(max_attempts=3, factor=2, min_timeout="1s", max_timeout="10s"),
    timeout="5m",
)
async def process_document(ctx: durakube.TaskContext, payload: DocumentInput) -> dict[str, object]:
    doc = await fetch_document(payload.document_id)
    text = await extract_text(doc)
    embedding = await generate_embedding(text)
    dimensions = await store_embedding(payload.document_id, embedding)
    return {"success": True, "documentId": payload.document_id, "dimensions": dimensions,
            "words": len(text.split())}
