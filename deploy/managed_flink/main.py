"""Entry point of the hot-path job in the Managed Service for Apache Flink package (the zip's main.py).

The zip holds everything the job needs besides what the runtime provides (PyFlink,
numpy, ...): the project's packages and their pure/compiled dependencies in
``lib/site-packages`` (the ``pyFiles`` run option puts it on the workers' path) and the
one connector jar in ``lib/`` (the ``jarfile`` run option). Run locally from an
unpacked zip, ``python main.py --properties FILE``, it adds both itself. ``application_properties.json``
beside it is the file Managed Flink writes for a prod stack with the template's defaults (tested
against the template and the reader: ``tests/unit/deploy/test_cloudformation.py``).
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SITE_PACKAGES = HERE / "lib" / "site-packages"
# First on the path, not appended (site.addsitedir): the zip's pinned pydantic, redis, ... must win over
# whatever the runtime's interpreter carries. The one path edit outside tests: a zip has no installer.
sys.path.insert(0, str(SITE_PACKAGES))

from btcpred.flink_jobs import hot_path_job, runtime_properties  # noqa: E402


def main() -> None:
    local = not runtime_properties.MANAGED_FLINK_PROPERTIES.is_file()
    hot_path_job.run(jars=sorted((HERE / "lib").glob("*.jar")) if local else [], python_files=[SITE_PACKAGES] if local else [])


if __name__ == "__main__":
    main()
