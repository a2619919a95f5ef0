"""`durakube-operator`: the operator's entry point (the operator image's command).

Reads the settings (failing fast on bad ones), then runs kopf with the handlers
of `durakube_operator.handlers`, cluster-wide or in the namespaces listed in
DURAKUBE_NAMESPACES, with a liveness endpoint for the pod's probe.
"""

from __future__ import annotations

import logging
import sys

import kopf

from durakube_operator import (
    handlers,  # registers the kopf handlers on import
    settings,
)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = settings.from_environment()
    except settings.SettingsError as error:
        print(f"durakube-operator: {error}", file=sys.stderr)
        return 2
    # kopf logs every handler call at INFO; one line per pod event is noise at our scale.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    kopf.run(
        standalone=True,  # correctness rests on Postgres and deterministic pod names, not peering
        clusterwide=not config.namespaces,
        namespaces=list(config.namespaces),
        liveness_endpoint=f"http://0.0.0.0:{config.liveness_port}/healthz",
        memo=handlers.Memo(),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
