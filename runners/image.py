"""Build the Docker runner's image on this machine, without any registry.

Four steps, each cached under ``runners/image/build/`` (gitignored):

1. ``rootfs``: a Debian bookworm root file system made with ``mmdebstrap
   --variant=minbase`` from the mirror in this host's apt sources, holding
   Python 3.11 and the few libraries the wheels need; what minbase brings that
   no job uses (apt, perl, login and passwd, util-linux, bash, ...) is purged
   again, and no file keeps a setuid or setgid bit nor write access for anyone
   but root (``/tmp`` aside, which a tmpfs covers at run time);
2. ``import``: ``docker import`` of that root as the base image;
3. ``wheels``: DuckDB, pandas, NumPy, PyArrow, SciPy, statsmodels and
   scikit-learn (with their dependencies) downloaded as manylinux wheels by
   the host's pip, pinned to the versions in the host's own environment
   (read with importlib.metadata, so versions live in one place: the
   project's environment);
4. ``build``: a build with no network on top of the base that installs the
   wheels with ``pip --no-index``, adds the harness and a non-root user.

``IMAGE_TAG`` ends in a digest of everything that goes into the image, so a
changed harness or a changed pin means a new tag: the runner then reports
the image missing instead of silently running stale code.

Run ``python -m runners.image`` (``--force`` to rebuild the last step). To
refresh the Debian packages, delete ``runners/image/build/`` and the
``sandbox-runner-base`` images.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from runners.contract import HARNESS_DIR, RunnerError

Echo = Callable[[str], object]

IMAGE_REPOSITORY = "sandbox-runner"
BASE_REPOSITORY = "sandbox-runner-base"
BUILD_DIR = Path(__file__).parent / "image" / "build"

DEBIAN_SUITE = "bookworm"
# bookworm's python3 and glibc: the wheels are chosen to match them.
PYTHON_VERSION = "3.11"
GLIBC_MINOR = 36
# python3: the interpreter; libstdc++6: DuckDB and PyArrow are C++;
# tzdata: time zones for pandas and PyArrow. Everything else comes from
# minbase (Essential + Priority: required).
ROOTFS_PACKAGES = ("python3", "libstdc++6", "tzdata")
# Documentation and translations are of no use to a job and make the root
# larger; copyright files stay.
DPKG_OPTIONS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/info/*",
)
# What minbase installs that no job uses, purged again (dpkg itself stays, so that
# `dpkg-query -W` still lists what the image holds). The essential ones go too: the
# image is never upgraded or logged into, it is rebuilt. Kept: python3 and the
# libraries its standard modules load (libssl3, libsqlite3, libffi8, krb5 and tirpc
# for nis, ...), dash for /bin/sh, coreutils, libc-bin, tzdata, base-files, base-passwd.
ROOTFS_PURGE = (
    # package management and keys
    "apt",
    "libapt-pkg6.0",
    "gpgv",
    "debian-archive-keyring",
    # logins and passwords: all of the image's setuid programs
    "login",
    "passwd",
    "libpam-modules",
    "libpam-modules-bin",
    "libpam-runtime",
    "libpam0g",
    "libsemanage2",
    "libsemanage-common",
    "libaudit1",
    "libaudit-common",
    # disks, mounts and consoles
    "util-linux",
    "util-linux-extra",
    "mount",
    "e2fsprogs",
    "libext2fs2",
    "libss2",
    "logsave",
    "libsmartcols1",
    "libblkid1",
    "libmount1",
    "libudev1",
    "libsystemd0",
    "sysvinit-utils",
    "bsdutils",
    "hostname",
    "ncurses-bin",
    "libcap-ng0",
    "libcap2",
    "libsepol2",
    # the libraries only the above use
    "libgcrypt20",
    "libgpg-error0",
    "libgnutls30",
    "libp11-kit0",
    "libtasn1-6",
    "libhogweed6",
    "libnettle8",
    "libidn2-0",
    "libunistring2",
    "libseccomp2",
    "libxxhash0",
    "liblz4-1",
    "libdb5.3",
)
# Purged after the others, whose removal scripts call them: the maintainer-script
# helpers, perl and bash, and the tools a job has no use for (it runs Python).
ROOTFS_PURGE_LAST = (
    "debconf",
    "libdebconfclient0",
    "adduser",
    "usrmerge",
    "init-system-helpers",
    "perl",
    "perl-modules-5.36",
    "libperl5.36",
    "libgdbm-compat4",
    "libfile-find-rule-perl",
    "libnumber-compare-perl",
    "libtext-glob-perl",
    "perl-base",
    "bash",
    "readline-common",
    "gzip",
    "diffutils",
    "findutils",
    "grep",
    "sed",
    "mawk",
)
_PURGE = 'chroot "$1" dpkg --purge --force-remove-essential --force-depends '
# mmdebstrap mounts the host's /dev, /proc and /sys (and tmpfs on /run) into the root
# while its hooks run: -xdev keeps find out of them, but not off their mount points,
# and a chmod of the root's dev/shm would change the host's own /dev/shm. Docker gives
# the container its own of each at run time, so they are left out entirely.
_OWN_FILES = (
    '"$1" -xdev \\( -path "$1/dev" -o -path "$1/proc" -o -path "$1/sys" -o -path "$1/run" '
    '-o -path "$1/tmp" \\) -prune -o'
)
# Run in the finished root ("$1"): the purge, then no setuid or setgid bit and no write
# access for group or others anywhere (/tmp aside: a tmpfs covers it at run time).
ROOTFS_HOOKS = (
    _PURGE + " ".join(ROOTFS_PURGE),
    _PURGE + " ".join(ROOTFS_PURGE_LAST),
    f"find {_OWN_FILES} -perm /6000 ! -type l -exec chmod ug-s {{}} +",
    f"find {_OWN_FILES} -perm /0022 ! -type l -exec chmod go-w {{}} +",
)
# Host apt settings that decide whether the host's mirror can be used at all
# (a snapshot mirror's Release files are past their Valid-Until, a proxy).
FORWARDED_APT_OPTIONS = (
    "Acquire::Check-Valid-Until",
    "Acquire::Check-Date",
    "Acquire::http::Proxy",
    "Acquire::https::Proxy",
)
# The SQL engine, the data frame stack, and the analysis libraries that
# Python jobs may import (policies/python_check.py); dependencies (patsy,
# formulaic, joblib, threadpoolctl, ...) follow from the installed metadata.
IMAGE_PACKAGES = ("duckdb", "pandas", "numpy", "pyarrow", "scipy", "statsmodels", "scikit-learn")
RUNNER_UID = 10001
SITE_PACKAGES = f"/usr/local/lib/python{PYTHON_VERSION}/dist-packages"
DEBIAN_CODENAMES = {
    "bullseye",
    "bookworm",
    "trixie",
    "forky",
    "sid",
    "stable",
    "testing",
    "unstable",
    "oldstable",
}

DOCKERFILE = """\
# Generated by runners/image.py; edit that file instead.
FROM {base} AS install
COPY wheels/ /wheels/
# pip runs straight from its wheel, so the runner image holds no pip. The
# packages' own test suites (about 140 MB, nothing imports them) are left
# out, and so are C headers, Cython sources and type stubs (nothing compiles);
# in Python, as the base has no find (runners.image.ROOTFS_PURGE_LAST).
# Byte code is compiled here because the root is read-only at run time;
# unchecked-hash keeps it valid whatever the files' timestamps.
RUN python3 /wheels/{pip_wheel}/pip install --no-index --find-links=/wheels \\
        --no-cache-dir --no-compile --disable-pip-version-check --root-user-action=ignore \\
        --target=/site -c /wheels/constraints.txt -r /wheels/requirements.txt \\
    && rm -rf /site/bin \\
    && python3 -c "import pathlib, shutil; site = sorted(pathlib.Path('/site').rglob('*')); \\
        [shutil.rmtree(p) for p in site if p.name == 'tests' and p.is_dir()]; \\
        [p.unlink() for p in site if p.suffix in '.h .hpp .pxd .pyx .pyi'.split() \\
            and p.is_file()]" \\
    && python3 -m compileall -q -j 0 --invalidation-mode unchecked-hash /site \\
    && PYTHONPATH=/site python3 -c "import duckdb, numpy, pandas, pyarrow.parquet, scipy.stats, \\
        statsmodels.api, statsmodels.formula.api, sklearn.linear_model"

FROM {base}
COPY --from=install /site/ {site}/
RUN echo 'runner:x:{uid}:{uid}:sandbox job:/tmp:/usr/sbin/nologin' >> /etc/passwd \\
    && echo 'runner:x:{uid}:' >> /etc/group \\
    && mkdir -m 0700 /model && chown {uid}:{uid} /model
# /model: where a contest submission's fit leaves its model for predict. An empty
# named volume mounted there takes this folder's owner and mode (the root stays
# read-only); an ordinary job has nothing mounted there and cannot write it.
# Last, so that a changed harness rebuilds only these small layers.
COPY harness/ /opt/sandbox/
RUN python3 -m compileall -q --invalidation-mode unchecked-hash /opt/sandbox
# One BLAS and one OpenMP thread (scikit-learn): a job has one CPU, and the
# container's pids limit counts threads.
ENV OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
USER {uid}:{uid}
WORKDIR /tmp
LABEL sandbox.image="runner" sandbox.image.version="{version}"
ENTRYPOINT ["python3", "-I", "/opt/sandbox/harness.py"]
"""


class ImageBuildFailed(RunnerError):
    """One step of the image build failed; the message names the step."""


# -- what goes into the image ------------------------------------------------


def _requirement_name(requirement: str) -> str | None:
    """The distribution a requirement names, or None for an extra's."""
    if re.search(r"\bextra\s*==", requirement):
        return None
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return match.group(1) if match else None


def pinned_requirements() -> dict[str, str]:
    """The image's packages and their dependencies, at the host's versions.

    Dependencies are followed through the host's installed metadata; one
    not installed here (e.g. a Windows-only one) is left to pip.
    """
    pins: dict[str, str] = {}
    pending = list(IMAGE_PACKAGES)
    while pending:
        name = pending.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in pins:
            continue
        try:
            pins[key] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            if name in IMAGE_PACKAGES:
                raise ImageBuildFailed(
                    f"Runner image build failed at step 'pins': {name} is not installed in "
                    f"this environment ({sys.executable}), so its version is unknown."
                ) from None
            continue
        for requirement in importlib.metadata.requires(name) or []:
            dependency = _requirement_name(requirement)
            if dependency:
                pending.append(dependency)
    return dict(sorted(pins.items()))


def _pip_version() -> str:
    return importlib.metadata.version("pip")


def _wheel_platforms() -> list[str]:
    """manylinux tags whose wheels run on bookworm's glibc, newest first."""
    arch = platform.machine()
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(GLIBC_MINOR, 16, -1)]
    tags.append(f"manylinux2014_{arch}")
    if arch in ("x86_64", "i686"):
        tags += [f"manylinux2010_{arch}", f"manylinux1_{arch}"]
    return tags


def _wheels_key(pins: dict[str, str]) -> str:
    parts = [PYTHON_VERSION, _pip_version(), *_wheel_platforms(), *map("==".join, pins.items())]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


def _safe_pins() -> dict[str, str]:
    try:
        return pinned_requirements()
    except ImageBuildFailed:
        return {}


def _digest(pins: dict[str, str]) -> str:
    """A digest of every input of the image: a change means a new tag."""
    digest = hashlib.sha256()
    parts = [
        DEBIAN_SUITE,
        PYTHON_VERSION,
        str(GLIBC_MINOR),
        platform.machine(),
        *ROOTFS_PACKAGES,
        *DPKG_OPTIONS,
        *ROOTFS_HOOKS,
        *(f"{name}=={version}" for name, version in pins.items()),
        DOCKERFILE,
        str(RUNNER_UID),
    ]
    for part in parts:
        digest.update(part.encode() + b"\0")
    for path in sorted(HARNESS_DIR.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def _rootfs_key() -> str:
    parts = (DEBIAN_SUITE, platform.machine(), *ROOTFS_PACKAGES, *DPKG_OPTIONS, *ROOTFS_HOOKS)
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


IMAGE_VERSION = f"{DEBIAN_SUITE}-py{PYTHON_VERSION}-{_digest(_safe_pins())}"
IMAGE_TAG = f"{IMAGE_REPOSITORY}:{IMAGE_VERSION}"


# -- host configuration --------------------------------------------------------


def _apt_source_entries() -> list[tuple[list[str], list[str]]]:
    """(URIs, suites) of every enabled entry of the host's apt sources."""
    entries: list[tuple[list[str], list[str]]] = []
    apt = Path("/etc/apt")
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text(encoding="utf-8", errors="replace")):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
            if fields.get("enabled", "yes").lower() == "no":
                continue
            if "deb" not in fields.get("types", "").split():
                continue
            entries.append((fields.get("uris", "").split(), fields.get("suites", "").split()))
    one_line = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]
    for path in one_line:
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            # "deb [options] URI suite components"; the options do not matter here.
            words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] == "deb":
                entries.append(([words[1]], [words[2]]))
    return entries


def debian_sources() -> list[str]:
    """``deb`` lines for bookworm from the Debian mirror this host uses.

    ``SANDBOX_DEBIAN_MIRROR`` (a URI) overrides the host's main mirror, for a
    host whose apt does not point at Debian.
    """
    main = os.environ.get("SANDBOX_DEBIAN_MIRROR", "").strip() or None
    security = None
    for uris, suites in _apt_source_entries():
        for suite in suites:
            codename, _, pocket = suite.partition("-")
            if codename not in DEBIAN_CODENAMES or not uris:
                continue
            if pocket == "security" and security is None:
                security = uris[0]
            elif pocket == "" and main is None:
                main = uris[0]
    if main is None:
        raise ImageBuildFailed(
            "Runner image build failed at step 'rootfs': no Debian mirror found in "
            "/etc/apt/sources.list(.d); set SANDBOX_DEBIAN_MIRROR to a Debian mirror URI."
        )
    lines = [
        f"deb {main} {DEBIAN_SUITE} main",
        f"deb {main} {DEBIAN_SUITE}-updates main",
    ]
    if security:
        lines.append(f"deb {security} {DEBIAN_SUITE}-security main")
    return lines


def apt_options() -> list[str]:
    """The host's settings from FORWARDED_APT_OPTIONS, as mmdebstrap --aptopt values."""
    try:
        dump = subprocess.run(
            ["apt-config", "dump"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    options = []
    for line in dump.splitlines():
        key, _, value = line.partition(" ")
        if key in FORWARDED_APT_OPTIONS and value.endswith(";"):
            options.append(f"{key} {value}")
    return options


# -- steps ---------------------------------------------------------------------


@contextmanager
def _step(name: str, echo: Echo) -> Iterator[None]:
    echo(f"[{name}] ...")
    started = time.monotonic()
    try:
        yield
    except ImageBuildFailed:
        raise
    except Exception as error:
        raise ImageBuildFailed(f"Runner image build failed at step '{name}': {error}") from error
    echo(f"[{name}] done in {time.monotonic() - started:.1f} s")


def _run(command: list[str], *, step: str, echo: Echo) -> None:
    """Run a host command, echoing its output; fail naming the step."""
    try:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
    except OSError as error:
        raise ImageBuildFailed(
            f"Runner image build failed at step '{step}': cannot run {command[0]}: {error}"
        ) from error
    tail: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        echo(line.rstrip())
        tail = [*tail[-19:], line.rstrip()]
    if process.wait() != 0:
        raise ImageBuildFailed(
            f"Runner image build failed at step '{step}': {command[0]} exited with "
            f"{process.returncode}; last output:\n" + "\n".join(tail)
        )


def _build_rootfs(target: Path, echo: Echo) -> None:
    if shutil.which("mmdebstrap") is None:
        raise ImageBuildFailed(
            "Runner image build failed at step 'rootfs': mmdebstrap is not installed "
            "(run .ci/docker-up, or apt-get install mmdebstrap)."
        )
    partial = target.with_name(target.name + ".partial")
    command = [
        "mmdebstrap",
        "--variant=minbase",
        "--format=tar",
        f"--include={','.join(ROOTFS_PACKAGES)}",
        *(f"--aptopt={option}" for option in apt_options()),
        *(f"--dpkgopt={option}" for option in DPKG_OPTIONS),
        *(f"--customize-hook={hook}" for hook in ROOTFS_HOOKS),
        DEBIAN_SUITE,
        str(partial),
        *debian_sources(),
    ]
    try:
        _run(command, step="rootfs", echo=echo)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)


def _image_exists(client: Any, tag: str) -> bool:
    from docker.errors import ImageNotFound

    try:
        client.images.get(tag)
    except ImageNotFound:
        return False
    return True


def _import_base(client: Any, rootfs: Path, tag: str) -> None:
    repository, _, version = tag.partition(":")
    response = client.api.import_image_from_file(str(rootfs), repository=repository, tag=version)
    if "error" in str(response).lower() or not _image_exists(client, tag):
        raise ImageBuildFailed(
            f"Runner image build failed at step 'import': the engine answered {response!r}"
        )


def _download_wheels(target: Path, pins: dict[str, str], echo: Echo) -> None:
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    requirements = [f"{name}=={pins[name]}" for name in IMAGE_PACKAGES]
    constraints = [f"{name}=={version}" for name, version in pins.items()]
    (partial / "requirements.txt").write_text("\n".join(requirements) + "\n")
    (partial / "constraints.txt").write_text("\n".join(constraints) + "\n")
    target_python = [
        "--only-binary=:all:",
        f"--python-version={PYTHON_VERSION}",
        "--implementation=cp",
        *(f"--platform={tag}" for tag in _wheel_platforms()),
    ]
    pip = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-d"]
    _run(
        [*pip, str(partial), *target_python, "-c", str(partial / "constraints.txt"), *requirements],
        step="wheels",
        echo=echo,
    )
    _run(
        [*pip, str(partial), "--only-binary=:all:", "--no-deps", f"pip=={_pip_version()}"],
        step="wheels",
        echo=echo,
    )
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)


def _prepare_context(context: Path, wheels: Path, base_tag: str, version: str) -> None:
    shutil.rmtree(context, ignore_errors=True)
    (context / "wheels").mkdir(parents=True)
    for source in wheels.iterdir():
        destination = context / "wheels" / source.name
        try:
            os.link(source, destination)  # the wheels are large; a link costs nothing
        except OSError:
            shutil.copy2(source, destination)
    (context / "harness").mkdir()
    for source in sorted(HARNESS_DIR.glob("*.py")):
        shutil.copy2(source, context / "harness" / source.name)
    pip_wheel = next(p.name for p in wheels.glob("pip-*.whl"))
    (context / "Dockerfile").write_text(
        DOCKERFILE.format(
            base=base_tag, pip_wheel=pip_wheel, site=SITE_PACKAGES, uid=RUNNER_UID, version=version
        )
    )


def _docker_build(client: Any, context: Path, tag: str, echo: Echo) -> None:
    # The engine API's classic builder: the same on every Docker version and
    # needs no buildx plugin, unlike whatever `docker build` defaults to.
    stream = client.api.build(
        path=str(context),
        tag=tag,
        network_mode="none",  # the wheels are in the context; nothing is fetched
        pull=False,
        rm=True,
        forcerm=True,
        decode=True,
    )
    for chunk in stream:
        if "error" in chunk:
            detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
            raise ImageBuildFailed(f"Runner image build failed at step 'build': {detail}")
        text = chunk.get("stream", "").rstrip()
        if text:
            echo(text)
    if not _image_exists(client, tag):
        raise ImageBuildFailed(f"Runner image build failed at step 'build': no image {tag}")


def build_image(*, force: bool = False, echo: Echo = print) -> str:
    """Build the runner image (skipped when it exists and not ``force``); return its tag."""
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=900)
        client.ping()
    except DockerException as error:
        raise ImageBuildFailed(
            f"Runner image build failed at step 'engine': the Docker engine is not reachable "
            f"({error}); start it with .ci/docker-up."
        ) from error
    try:
        with _build_lock(echo):
            return _build(client, force=force, echo=echo)
    finally:
        client.close()


@contextmanager
def _build_lock(echo: Echo) -> Iterator[None]:
    """One build at a time on this machine: they share the build folder."""
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    with open(BUILD_DIR / "build.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            echo("waiting for another build of the runner image ...")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _build(client: Any, *, force: bool, echo: Echo) -> str:
    if not force and _image_exists(client, IMAGE_TAG):
        echo(f"{IMAGE_TAG} exists; nothing to do (force=True rebuilds it).")
        return IMAGE_TAG
    pins = pinned_requirements()
    if _digest(pins) not in IMAGE_TAG:
        raise ImageBuildFailed(
            "Runner image build failed at step 'pins': the harness or the installed packages "
            "changed since this process started; run the build again."
        )
    base_tag = f"{BASE_REPOSITORY}:{DEBIAN_SUITE}-{_rootfs_key()}"
    if _image_exists(client, base_tag):
        echo(f"[rootfs] [import] cached: {base_tag}")
    else:
        rootfs = BUILD_DIR / f"rootfs-{_rootfs_key()}.tar"
        if rootfs.exists():
            echo(f"[rootfs] cached: {rootfs}")
        else:
            with _step("rootfs", echo):
                _build_rootfs(rootfs, echo)
        with _step("import", echo):
            _import_base(client, rootfs, base_tag)
    wheels = BUILD_DIR / f"wheels-{_wheels_key(pins)}"
    if wheels.is_dir():
        echo(f"[wheels] cached: {wheels}")
    else:
        with _step("wheels", echo):
            _download_wheels(wheels, pins, echo)
    with _step("build", echo):
        context = BUILD_DIR / "context"
        _prepare_context(context, wheels, base_tag, IMAGE_VERSION)
        _docker_build(client, context, IMAGE_TAG, echo)
    return IMAGE_TAG


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runners.image", description=__doc__)
    parser.add_argument("--force", action="store_true", help="rebuild even if the image exists")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        tag = build_image(force=args.force)
    except ImageBuildFailed as error:
        print(error, file=sys.stderr)
        return 1
    print(f"{tag} ready in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
