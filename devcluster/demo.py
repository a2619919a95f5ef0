"""`make demo`: the whole product on the local test bed, start to finish.

Starts the test bed (control plane, process node, Postgres), installs the operator
with `helm install` of charts/durakube (CRDs, RBAC, two replicas electing a
leader; the process node runs the operator image from the project's virtual
environment), applies the process-document example
(`examples/process-document.yaml`: a Task and one run of it) with kubectl, waits
for the run to succeed, and shows what a user sees: `kubectl get taskruns`, the
run's status, its pods, and the checkpointed steps in Postgres. Then it stops
everything.

Talks to the product only through its public surfaces (helm, kubectl, SQL), so it
imports neither the SDK nor the operator.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from devcluster import build, cluster, ports, postgres

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RUN = "process-quarterly-report"


def _kubectl(bed: cluster.Cluster, *args: str) -> str:
    result = subprocess.run([str(BIN / "kubectl"), *args], env=bed.env(), capture_output=True,
                            text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def _helm(bed: cluster.Cluster, *args: str) -> str:
    result = subprocess.run([str(build.binary("helm", "helm")), *args], env=bed.env(),
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"helm {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def _say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="durakube-demo-") as folder:
        state = Path(folder)
        _say("starting the test bed: etcd, kube-apiserver, controller-manager, scheduler, process node")
        started = time.monotonic()
        bed = cluster.start(state / "cluster")
        database = postgres.start(state / "postgres")
        try:
            print(f"up in {time.monotonic() - started:.1f}s")
            print(_kubectl(bed, "get", "nodes"))
            dsn = database.create_database("durakube")

            _say("helm install durakube charts/durakube (CRDs, RBAC, two operator replicas)")
            values = state / "values.yaml"
            # The process node's pods share this machine's network: free ports, not 8080-8082.
            values.write_text(json.dumps({
                "database": {"url": dsn},
                "ports": {"metrics": ports.free_port(), "health": ports.free_port(),
                          "webhook": ports.free_port()}}))
            print(_helm(bed, "install", "durakube", str(ROOT / "charts" / "durakube"),
                        "--namespace", "durakube-system", "--create-namespace",
                        "--values", str(values), "--wait", "--timeout", "5m"))
            print(_kubectl(bed, "get", "pods", "-n", "durakube-system", "-o", "wide"))
            holder = _kubectl(bed, "get", "lease", "durakube", "-n", "durakube-system", "-o",
                              "jsonpath={.spec.holderIdentity}")
            print(f"leader: {holder}")

            # The example keeps its results in a database of its own (here the same server).
            print(_kubectl(bed, "create", "secret", "generic", "examples-database",
                           f"--from-literal=url={dsn}"))
            _say("kubectl apply -f examples/process-document.yaml")
            print(_kubectl(bed, "apply", "-f", str(ROOT / "examples" / "process-document.yaml")))

            _say(f"waiting for TaskRun {RUN}")
            phase = _wait_for_end(bed)
            print(_kubectl(bed, "get", "taskruns"))
            status = json.loads(_kubectl(bed, "get", "taskrun", RUN, "-o", "json"))["status"]
            print(json.dumps({k: status.get(k) for k in
                              ("phase", "attempt", "completedSteps", "currentStep", "output")},
                             indent=2))
            print(_kubectl(bed, "get", "pods", "-l", "app.kubernetes.io/managed-by=durakube"))

            _say("the checkpointed steps in Postgres")
            print(database.psql(
                "SELECT s.seq, s.name, s.status, round(s.duration_ms::numeric, 1) AS ms, "
                "left(s.result::text, 60) AS result FROM durakube.steps s "
                "JOIN durakube.runs r USING (run_id) WHERE r.name = 'process-quarterly-report' "
                "ORDER BY seq", database="durakube"))
            if phase != "Succeeded":
                print(_kubectl(bed, "logs", "-n", "durakube-system", "-l",
                               "app.kubernetes.io/name=durakube", "--prefix", "--tail=40"),
                      file=sys.stderr)
                _say(f"the run ended {phase}")
                return 1
            _say("the run succeeded")
            return 0
        finally:
            bed.stop()
            database.stop()


def _wait_for_end(bed: cluster.Cluster, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        out = _kubectl(bed, "get", "taskrun", RUN, "-o",
                       "jsonpath={.status.phase} {.status.currentStep}").strip()
        if out != seen:
            print(f"  {out or '(no status yet)'}", flush=True)
            seen = out
        phase = out.split(" ")[0] if out else ""
        if phase in ("Succeeded", "Failed", "Canceled", "TimedOut", "Expired"):
            return phase
        time.sleep(0.5)
    return "still running after the demo's time limit"


if __name__ == "__main__":
    sys.exit(main())
