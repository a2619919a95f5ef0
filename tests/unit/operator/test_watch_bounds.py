"""The operator's watch streams are bounded, on the settings the installed kopf really has,
and pods are watched by the operator's own watch, for attempt pods only."""

from __future__ import annotations

import dataclasses

import kopf

from durakube_operator import controlling, handlers, watching


def test_a_silently_dead_watch_stream_is_reopened_within_bounds() -> None:
    settings = kopf.OperatorSettings()
    # The names exist in this kopf: a renamed setting would be a silent no-op otherwise.
    names = {field.name for field in dataclasses.fields(settings.watching)}
    assert {"server_timeout", "client_timeout", "connect_timeout", "inactivity_timeout"} <= names
    handlers.configure_watching(settings)
    watching = settings.watching
    # A stream with no event at all is dropped long before the client's hard limit, and
    # that limit comes after the apiserver's own, so a live stream ends cleanly.
    assert watching.inactivity_timeout is not None and watching.inactivity_timeout > 60
    assert watching.server_timeout is not None and watching.client_timeout is not None
    assert watching.inactivity_timeout < watching.server_timeout < watching.client_timeout
    assert watching.connect_timeout is not None and watching.connect_timeout <= 10
    # kopf puts the server's timeout in the URL as str(...): the apiserver takes an integer.
    assert str(watching.server_timeout).isdigit()


def test_kopf_watches_no_pods_the_operators_own_watch_takes_attempt_pods_only() -> None:
    watched = {(selector.group, selector.any_name)
               for selector in (handler.selector for handler in
                                kopf.get_default_registry()._watching.get_all_handlers())
               if selector is not None}
    assert ("durakube.io", "taskruns") in watched
    assert not {name for group, name in watched if group in ("", None)}
    # The pod watch asks the API server for attempt pods only, and is bounded as kopf's.
    assert controlling.ATTEMPT_PODS == "app.kubernetes.io/managed-by=durakube"
    assert watching.WATCH_INACTIVITY_TIMEOUT < watching.WATCH_SERVER_TIMEOUT < watching.WATCH_CLIENT_TIMEOUT


def test_an_idle_object_worker_lets_go_of_its_object_within_a_second() -> None:
    settings = kopf.OperatorSettings()
    assert "idle_timeout" in {field.name for field in dataclasses.fields(settings.queueing)}
    default = settings.queueing.idle_timeout
    handlers.configure_watching(settings)
    assert settings.queueing.idle_timeout <= 1.0 < default


async def test_every_object_shares_the_replicas_memo() -> None:
    from kopf._core.reactor import inventory  # where kopf makes each object's memo

    memo = handlers.Memo()
    memo.settings = "the replica's"  # type: ignore[assignment]
    memories = inventory.ResourceMemories()
    first, second = [await memories.recall({"metadata": {"uid": uid, "name": uid, "namespace": "ns"}},
                                           memobase=memo) for uid in ("a", "b")]
    assert first.memo is memo and second.memo is memo
