"""The process node's program: `python -m devcluster.node.agent` or `durakube-node`.

Reads the command line, registers the Node, starts the kubelet endpoint, the
heartbeat and the pod sync, and on SIGTERM/SIGINT stops every container
(SIGTERM, then SIGKILL after a short grace) and exits, leaving the Node and its
pods in the API, as a stopped kubelet does.

Started by `devcluster.cluster`; everything it runs lives in the other modules.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from devcluster.node import (
    apicalls,
    cgroups,
    events,
    images,
    registering,
    running,
    serving,
    settings,
    syncing,
)

logger = logging.getLogger("devcluster.node")


def parse_arguments(argv: list[str] | None = None) -> settings.Settings:
    parser = argparse.ArgumentParser(prog="durakube-node",
                                     description="A kubelet stand-in that runs pods as processes.")
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--node-name", required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--serving-cert", type=Path, required=True)
    parser.add_argument("--serving-key", type=Path, required=True)
    parser.add_argument("--apiserver-port", type=int, required=True)
    parser.add_argument("--serving-port", type=int, default=0,
                        help="port of the kubelet HTTPS endpoint (default: a free one)")
    parser.add_argument("--image-map", type=Path, default=None,
                        help='JSON file {"image-repo": ["cmd", ...]} of extra entrypoints')
    parser.add_argument("--backoff-initial", type=float, default=10.0)
    parser.add_argument("--backoff-max", type=float, default=40.0)
    parser.add_argument("--shutdown-grace", type=float, default=5.0)
    parser.add_argument("--node-labels", type=labels_argument, default={},
                        help="labels the Node registers with: key=value,...")
    parser.add_argument("--register-with-taints", type=taints_argument, default=[],
                        help="taints the Node registers with: key=value:Effect,...")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return settings.Settings(
        node_name=args.node_name, state_dir=args.state_dir.resolve(), kubeconfig=args.kubeconfig,
        serving_cert=args.serving_cert, serving_key=args.serving_key,
        apiserver_port=args.apiserver_port, serving_port=args.serving_port,
        image_map=args.image_map, backoff_initial=args.backoff_initial,
        backoff_max=args.backoff_max, shutdown_grace=args.shutdown_grace,
        labels=args.node_labels, taints=args.register_with_taints)


def labels_argument(text: str) -> dict[str, str]:
    """`key=value,...` as the kubelet's --node-labels reads it."""
    labels = {}
    for item in filter(None, text.split(",")):
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise argparse.ArgumentTypeError(f"not key=value: {item!r}")
        labels[key] = value
    return labels


TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def taints_argument(text: str) -> list[dict[str, str]]:
    """`key=value:Effect,...` (the value may be left out) as the kubelet's
    --register-with-taints reads it."""
    taints = []
    for item in filter(None, text.split(",")):
        pair, colon, effect = item.rpartition(":")
        key, _, value = pair.partition("=")
        if not colon or not key or effect not in TAINT_EFFECTS:
            raise argparse.ArgumentTypeError(
                f"not key[=value]:Effect with Effect one of {', '.join(TAINT_EFFECTS)}: {item!r}")
        taints.append({"key": key, "value": value, "effect": effect} if value
                      else {"key": key, "effect": effect})
    return taints


async def run_node(config: settings.Settings) -> None:
    """Runs the node until SIGTERM or SIGINT."""
    config.state_dir.mkdir(parents=True, exist_ok=True)
    config.pods_dir.mkdir(parents=True, exist_ok=True)
    # Processes of a previous agent of this node die with it (parent-death signal);
    # anything that escaped is killed with its cgroup.
    await asyncio.to_thread(cgroups.remove_stale_cgroups, config.cgroup_parent)
    credentials = apicalls.read_kubeconfig(config.kubeconfig, config.state_dir / "credentials")
    client = apicalls.Client(credentials)
    # The Lease and node status have a connection of their own, never behind pod traffic.
    heartbeat_client = apicalls.Client(credentials, timeout=10.0, concurrency=1)
    table = images.load_image_table(config.image_map)
    services = running.NodeServices(
        config, client, table, registering.measure_capacity(config.state_dir),
        events.EventRecorder(client, config.node_name))
    server = serving.start_server(
        config.serving_port, config.serving_cert, config.serving_key, credentials.ca_file,
        config.pods_dir, lambda ns, pod, c: (ns, pod, c) in services.running)
    port = server.server_address[1]
    logger.info("kubelet endpoint on https://127.0.0.1:%d", port)
    node = await registering.register_node(client, config, int(port))
    syncer = syncing.PodSyncer(services)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [
        asyncio.create_task(registering.keep_heartbeat(heartbeat_client, config, int(port),
                                                       node["metadata"]["uid"])),
        asyncio.create_task(syncer.sync_forever()),
    ]
    logger.info("node %s ready", config.node_name)
    await stop.wait()
    logger.info("stopping: killing containers")
    for task in tasks:
        task.cancel()
    await syncer.shut_down(config.shutdown_grace)
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    server.shutdown()
    client.close()
    heartbeat_client.close()
    await asyncio.to_thread(cgroups.remove_stale_cgroups, config.cgroup_parent, remove_parent=True)
    logger.info("stopped")


def main(argv: list[str] | None = None) -> None:
    config = parse_arguments(argv)
    try:
        asyncio.run(run_node(config))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
