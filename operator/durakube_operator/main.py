"""`durakube-operator`: the operator's entry point (the operator image's command).

Reads the settings (failing fast, with one message naming every bad variable),
then runs one replica (`operating`): the HTTP endpoints, the leader election, and
kopf with the handlers of `durakube_operator.handlers` while this replica leads,
cluster-wide or in the namespaces listed in DURAKUBE_NAMESPACES.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from durakube_operator import (
    handlers,  # noqa: F401 (registers the kopf handlers on import)
    operating,
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
    return asyncio.run(operating.operate(config))


if __name__ == "__main__":
    sys.exit(main())
