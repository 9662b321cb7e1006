"""The package spark-submit ships: mlops_spark built as a wheel, cached by a hash of its sources."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from mlops_spark.errors import JobFailed
from mlops_spark.submit.flags import PACKAGE

# --------------------------------------------------------------------------- the package


def repo_root() -> Path:
    """The checkout that holds jobs/ and the package (spark-submit.sh sets MLOPS_SPARK_ROOT)."""
    env = os.environ.get("MLOPS_SPARK_ROOT")
    return Path(env).resolve() if env else Path(__file__).resolve().parents[2]


def available_jobs(root: Path) -> list[str]:
    return sorted(p.stem for p in (root / "jobs").glob("*.py") if not p.name.startswith("_"))


def source_digest(root: Path) -> str:
    """A hash of everything that goes into the package: rebuild only when it changes."""
    digest = hashlib.sha256()
    files = [root / "setup.py", *sorted((root / PACKAGE).rglob("*"))]
    for path in files:
        if not path.is_file() or "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo"):
            continue
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def build_dir(root: Path) -> Path:
    return Path(os.environ.get("MLOPS_SPARK_BUILD_DIR", root / ".cache" / "spark-submit"))


def package_path(root: Path, out: Path | None = None) -> Path:
    """Where the package of the current sources is (or will be) kept.

    Spark puts only .zip/.egg/.py files on the Python path, so the wheel is shipped under a
    .zip name (a pure-Python wheel is a zip of the importable package)."""
    digest = source_digest(root)[:16]
    return (out or build_dir(root)) / digest / f"{PACKAGE}-{digest}.zip"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_package(root: Path, out: Path | None = None, keep: int = 3) -> tuple[Path, bool]:
    """Build mlops_spark's wheel with pip unless the current sources were built already.

    Returns the .zip to ship and whether it was built now (False: from the cache)."""
    target = package_path(root, out)
    base = target.parent.parent
    if target.exists():
        return target, False
    with _locked(base / ".lock"):
        if target.exists():
            return target, False
        work = Path(tempfile.mkdtemp(prefix=".build-", dir=base))
        try:
            pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet"]
            if _can_build_offline():
                pip.append("--no-build-isolation")
            done = subprocess.run(
                [*pip, "--wheel-dir", str(work), str(root)],
                capture_output=True,
                text=True,
                timeout=600,
            )
            wheels = list(work.glob("*.whl"))
            if done.returncode != 0 or len(wheels) != 1:
                tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
                raise JobFailed(f"building the {PACKAGE} wheel with pip failed:\n{tail}")
            with zipfile.ZipFile(wheels[0]) as wheel:
                if f"{PACKAGE}/__init__.py" not in wheel.namelist():
                    raise JobFailed(f"the built wheel {wheels[0].name} does not contain {PACKAGE}/")
            shutil.copy2(wheels[0], work / target.name)
            os.replace(work, target.parent)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        _prune(base, keep)
    return target, True


def _can_build_offline() -> bool:
    """setuptools can build wheels without downloading anything (bdist_wheel built in since
    setuptools 70.1, or the `wheel` package installed); else pip builds in isolation."""
    from importlib import metadata

    try:
        major, minor = (int(x) for x in metadata.version("setuptools").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return False
    if (major, minor) >= (70, 1):
        return True
    try:
        metadata.version("wheel")
    except metadata.PackageNotFoundError:
        return False
    return True


def _prune(base: Path, keep: int) -> None:
    builds = sorted(
        (p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in builds[keep:]:
        shutil.rmtree(old, ignore_errors=True)
