"""`make demo`: the whole product on the local test bed, start to finish.

Starts the test bed (control plane, process node, Postgres), installs the CRDs,
starts the operator (its real entry point, `durakube-operator`), applies the
process-document example (`examples/process-document.yaml`: a Task and one run of
it) with kubectl, waits for the run to succeed, and
shows what a user sees: `kubectl get taskruns`, the run's status, its pods, and
the checkpointed steps in Postgres. Then it stops everything.

Talks to the product only through its public surfaces (kubectl, the operator's
command, SQL), so it imports neither the SDK nor the operator.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from devcluster import cluster, postgres

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RUN = "process-quarterly-report"


def _kubectl(bed: cluster.Cluster, *args: str) -> str:
    result = subprocess.run([str(BIN / "kubectl"), *args], env=bed.env(), capture_output=True,
                            text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
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
        operator: subprocess.Popen[bytes] | None = None
        try:
            print(f"up in {time.monotonic() - started:.1f}s")
            print(_kubectl(bed, "get", "nodes"))
            dsn = database.create_database("durakube")

            _say("installing the CRDs")
            print(_kubectl(bed, "apply", "-f", str(ROOT / "crds")))
            _wait_established(bed)

            _say("starting the operator (durakube-operator)")
            log = open(state / "operator.log", "wb")
            operator = subprocess.Popen(
                [str(BIN / "durakube-operator")], stdout=log, stderr=subprocess.STDOUT,
                env={**bed.env(), "DURAKUBE_DATABASE_URL": dsn, "DURAKUBE_HEALTH_PORT": "0",
                     "DURAKUBE_WEBHOOK_PORT": "0", "DURAKUBE_METRICS_PORT": "0"},
                start_new_session=True)

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
                print((state / "operator.log").read_text()[-3000:], file=sys.stderr)
                _say(f"the run ended {phase}")
                return 1
            _say("the run succeeded")
            return 0
        finally:
            if operator is not None and operator.poll() is None:
                os.killpg(operator.pid, signal.SIGTERM)
                try:
                    operator.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(operator.pid, signal.SIGKILL)
            bed.stop()
            database.stop()


def _wait_established(bed: cluster.Cluster, timeout: float = 90) -> None:
    # Right after apply, a CRD may have no status yet and kubectl wait refuses it: retry.
    deadline = time.monotonic() + timeout
    while True:
        try:
            _kubectl(bed, "wait", "--for=condition=Established", "--timeout=30s",
                     "-f", str(ROOT / "crds"))
            return
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


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
