"""The supply chain is pinned: every dependency in pyproject.toml is an exact version, the lock file
holds the same version, and every locked package carries hashes (pip --require-hashes refuses others)."""

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(lock: str = "requirements.lock") -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes), parsed from a lock file."""
    out: dict[str, tuple[str, int]] = {}
    current = None
    for line in (REPO / lock).read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==([^ ;\\]+)", line)
        if match:
            current = normalize(match.group(1).split("[")[0])
            out[current] = (match.group(2), 0)
        elif current and "--hash=sha256:" in line:
            version, hashes = out[current]
            out[current] = (version, hashes + 1)
    return out


def test_every_direct_dependency_is_pinned_and_locked_at_that_version():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    direct = [*project["dependencies"], *project["optional-dependencies"]["train"], *project["optional-dependencies"]["dev"]]
    lock = locked()
    for requirement in direct:
        name, _, version = requirement.partition("==")
        assert version, f"{requirement}: not pinned to an exact version"
        assert lock.get(normalize(name.split("[")[0]), (None,))[0] == version, (
            f"{requirement}: lock has {lock.get(normalize(name))}"
        )


def test_every_locked_package_has_hashes():
    lock = locked()
    assert len(lock) > 100
    assert [name for name, (_, hashes) in lock.items() if hashes == 0] == []


def overrides() -> dict[str, str]:
    """name -> version of deploy/lock/overrides.txt: where the lock departs from a dependency's own bound."""
    out = {}
    for line in (REPO / "deploy" / "lock" / "overrides.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            out[normalize(name)] = version
    return out


def test_the_lock_departs_from_a_dependencys_bound_only_where_an_override_says_so():
    """The lock is compiled with the overrides (its header says so, so a regeneration keeps them), holds
    each at its version, and the installed environment's only broken requirement is an overridden one."""
    import subprocess
    import sys

    header = (REPO / "requirements.lock").read_text().splitlines()[1]
    assert "--override deploy/lock/overrides.txt" in header
    lock = locked()
    assert overrides() == {"protobuf": "4.25.9"}
    assert all(lock[name][0] == version for name, version in overrides().items())
    check = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    broken = [line for line in check.stdout.splitlines() if "has requirement" in line]
    assert broken and all(
        normalize(line.split("has requirement ")[1].split("<")[0].split(">")[0].split("=")[0].split("!")[0]) in overrides()
        for line in broken
    ), check.stdout


TRAINING_ONLY = {"scikit-learn", "scipy", "skl2onnx", "matplotlib"}


def test_the_service_lock_is_the_full_locks_versions_without_training_or_dev_tools():
    """requirements-service.lock (the services' image) pins each package exactly as requirements.lock does
    (compiled with it as a constraint), holds none of the train extra, and the same override."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert {normalize(r.partition("==")[0]) for r in project["optional-dependencies"]["train"]} == TRAINING_ONLY
    full, service = locked(), locked("requirements-service.lock")
    header = (REPO / "requirements-service.lock").read_text().splitlines()[1]
    assert "--override deploy/lock/overrides.txt" in header and "-c requirements.lock" in header and "--extra" not in header
    assert {name: version for name, (version, _) in service.items()} == {name: full[name][0] for name in service}
    assert not TRAINING_ONLY & set(service) and all(hashes for _, hashes in service.values())
    assert not {"pytest", "moto", "cfn-lint", "ruff", "mypy"} & set(service)


def test_no_service_imports_a_training_library():
    """Every long-running process but the retraining job starts without the train extra: its module
    imports with scikit-learn, scipy, skl2onnx and matplotlib made unimportable."""
    import subprocess
    import sys

    from deploy import services

    modules = [s.module for name, s in services.SERVICES.items() if name not in ("retrain", "simulator")]
    modules.append("btcpred.adapters.db.migrate")  # the one-shot migration task runs the services' image too
    probe = (
        "import sys\n"
        "for name in ('sklearn', 'scipy', 'skl2onnx', 'matplotlib'):\n"
        "    sys.modules[name] = None\n"
        "import importlib\n"
        f"for module in {modules!r}:\n"
        "    importlib.import_module(module)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
