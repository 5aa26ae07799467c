"""The Docker runner against a real engine and the real runner image.

Each hostile job does its probing itself and reports what happened in an
output table, so the assertions read what the job could and could not do.
The isolation and escape tests (``isolated``) run under both engine runtimes,
gVisor's runsc and runc; the functional ones under the runner's default (auto:
runsc wherever it is registered), to keep the suite's time.
"""

from __future__ import annotations

import gc
import os
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from policies.python_check import check_python
from runners.containers import LABEL_JOB, LABEL_PID, LABEL_RUNNER
from runners.contract import Isolation, JobFailed, JobSpec, RunnerUnavailable, RunResult
from runners.docker_runner import DockerRunner, WarmPoolSettings
from runners.image import IMAGE_TAG
from runners.pool import POOL_JOB_LABEL

pytestmark = pytest.mark.docker


@pytest.fixture(params=["cold", "warm"])
def runner(docker_client: Any, request: Any, tmp_path: Path) -> Iterator[DockerRunner]:
    """Every test runs twice: in a container started for the job, and in a warm one
    started ahead from the pool (runners.pool), which must hold exactly as well."""
    yield from _runner(docker_client, request.param, tmp_path, "auto")


@pytest.fixture(params=["cold", "warm"])
def isolated(
    docker_client: Any, request: Any, tmp_path: Path, runtime: str
) -> Iterator[DockerRunner]:
    """As ``runner``, under each runtime in turn (the ``runtime`` fixture)."""
    yield from _runner(docker_client, request.param, tmp_path, runtime)


def _runner(docker_client: Any, kind: str, tmp_path: Path, runtime: str) -> Iterator[DockerRunner]:
    if kind == "cold":
        yield DockerRunner(docker_client, runtime=runtime)
        return
    pool = WarmPoolSettings(size=1, folder=tmp_path / "pool", memory_mb=1024, timeout_s=30)
    runner = DockerRunner(docker_client, runtime=runtime, pool=pool)
    runner.warm_up()
    deadline = time.monotonic() + 60
    while not runner._warm_pool()._ready and time.monotonic() < deadline:  # type: ignore[union-attr]
        time.sleep(0.05)
    yield runner
    runner.close()
    mine = {"label": [f"{LABEL_JOB}={POOL_JOB_LABEL}", f"{LABEL_PID}={os.getpid()}"]}
    assert runner.client.containers.list(all=True, filters=mine) == []  # none left warm


@pytest.fixture
def view(tmp_path: Path) -> Path:
    folder = tmp_path / "view"
    folder.mkdir(mode=0o700)
    pd.DataFrame(
        {
            "person_id": [1, 2, 3, 4, 5],
            "department": ["cardiology", "oncology", "cardiology", "oncology", "cardiology"],
            "age": [34, 51, 67, 45, 29],
        }
    ).to_parquet(folder / "visits.parquet")
    return folder


def make_spec(view: Path, code: str, *, language: str = "python", **limits: Any) -> JobSpec:
    return JobSpec(
        job_id=f"test-{uuid.uuid4().hex[:12]}",
        language=language,  # type: ignore[arg-type]
        code=textwrap.dedent(code),
        input_dir=view,
        **{"timeout_s": 30, **limits},
    )


def job_containers(client: Any, job_id: str) -> list[Any]:
    return client.containers.list(all=True, filters={"label": f"{LABEL_JOB}={job_id}"})


def run_job(runner: DockerRunner, spec: JobSpec) -> RunResult:
    """Run a job and check that, however it ended, its container is gone."""
    try:
        return runner.run(spec)
    finally:
        assert job_containers(runner.client, spec.job_id) == []


def probe(runner: DockerRunner, view: Path, code: str, **limits: Any) -> dict[str, str]:
    """Run a job that writes ``check -> outcome`` rows to the table "probe"."""
    result = run_job(runner, make_spec(view, code, **limits))
    (table,) = result.tables
    assert table.name == "probe"
    return {check: outcome for check, outcome in table.rows}


PROBE_HELPERS = """
import errno
import pandas as pd
import sandbox_job

outcomes = {}

def attempt(check, action):
    try:
        action()
        outcomes[check] = "ok"
    except OSError as error:
        outcomes[check] = errno.errorcode.get(error.errno or 0, type(error).__name__)

def report():
    frame = pd.DataFrame(sorted(outcomes.items()), columns=["check", "outcome"])
    sandbox_job.output("probe", frame, kind="model_summary", count_column=None)
"""


def test_sql_job_returns_table(runner: DockerRunner, view: Path) -> None:
    spec = make_spec(
        view,
        "SELECT department, count(*) AS n FROM visits GROUP BY department ORDER BY department",
        language="sql",
    )

    result = run_job(runner, spec)

    (table,) = result.tables
    assert table.name == "result"
    assert table.columns == ["department", "n"]
    assert table.rows == [["cardiology", 3], ["oncology", 2]]


def test_warm_pool_expects_the_last_language_and_runs_either(
    docker_client: Any, view: Path, tmp_path: Path
) -> None:
    pool_settings = WarmPoolSettings(size=1, folder=tmp_path / "pool", memory_mb=1024, timeout_s=30)
    runner = DockerRunner(docker_client, pool=pool_settings)
    pool = runner._warm_pool()
    assert pool is not None

    def warmed_for() -> str:
        if pool._filler is not None:
            pool._filler.join(timeout=60)  # the refill each run starts in the background
        pool.fill()
        (warm,) = pool._ready
        return warm.language

    sql = "SELECT department, count(*) AS n FROM visits GROUP BY department ORDER BY 1"
    python = (
        "import sandbox_job\n"
        "v = sandbox_job.table('visits')\n"
        "sandbox_job.output('n', v.groupby('department').size().reset_index(name='n'), "
        "kind='frequency', count_column='n')\n"
    )
    try:
        assert warmed_for() == "python"  # before any job: the imports that serve both
        # A SQL job in a container warmed for Python; the next one expects SQL.
        assert run_job(runner, make_spec(view, sql, language="sql")).tables[0].rows == [
            ["cardiology", 3],
            ["oncology", 2],
        ]
        assert warmed_for() == "sql"
        # A Python job in a container that imported DuckDB only still runs.
        (table,) = run_job(runner, make_spec(view, python)).tables
        assert sorted(table.rows) == [["cardiology", 3], ["oncology", 2]]
        assert warmed_for() == "python"
    finally:
        runner.close()


def test_python_job_returns_table(runner: DockerRunner, view: Path) -> None:
    code = """
    import sandbox_job
    visits = sandbox_job.table("visits")
    print("this line goes to the auditors' log")
    by_department = visits.groupby("department").age.agg(["count", "mean"]).reset_index()
    sandbox_job.output("ages", by_department, kind="magnitude", count_column="count")
    """

    result = run_job(runner, make_spec(view, code))

    (table,) = result.tables
    assert table.name == "ages"
    assert table.columns == ["department", "count", "mean"]
    assert table.rows == [["cardiology", 3, pytest.approx(43.333, abs=1e-3)], ["oncology", 2, 48.0]]
    assert table.declared == {"kind": "magnitude", "count_column": "count"}
    assert "auditors' log" in result.log


def test_python_job_network_unreachable(isolated: DockerRunner, view: Path) -> None:
    # Connecting is only tried when loopback is the sole interface, so this
    # test cannot send a packet off the machine even if isolation broke.
    code = (
        PROBE_HELPERS
        + """
import socket
interfaces = sorted(name for _, name in socket.if_nameindex())
outcomes["interfaces"] = ",".join(interfaces)
if interfaces == ["lo"]:
    attempt("connect", lambda: socket.create_connection(("192.0.2.1", 80), timeout=2))
    def resolve():
        try:
            socket.getaddrinfo("example.com", 80)
        except socket.gaierror as error:
            raise OSError(errno.EHOSTUNREACH, str(error)) from error
    attempt("resolve", resolve)
report()
"""
    )

    outcomes = probe(isolated, view, code)

    assert outcomes["interfaces"] == "lo"
    # runc's kernel says no route to the network, gVisor's none to the host: either way
    # nothing left.
    assert outcomes["connect"] in ("ENETUNREACH", "EHOSTUNREACH")
    assert outcomes["resolve"] == "EHOSTUNREACH"


def test_python_job_cannot_write_root_or_input(isolated: DockerRunner, view: Path) -> None:
    code = (
        PROBE_HELPERS
        + """
def write(path):
    with open(path, "w") as handle:
        handle.write("x")
attempt("root", lambda: write("/planted"))
attempt("etc", lambda: write("/etc/planted"))
attempt("harness", lambda: write("/opt/sandbox/harness.py"))
attempt("input_new", lambda: write("/input/planted.parquet"))
attempt("input_existing", lambda: write("/input/visits.parquet"))
attempt("tmp", lambda: write("/tmp/scratch"))
report()
"""
    )

    outcomes = probe(isolated, view, code)

    for place in ("root", "etc", "harness", "input_new", "input_existing"):
        assert outcomes[place] in ("EROFS", "EACCES"), place
    assert outcomes["tmp"] == "ok"
    assert sorted(p.name for p in view.iterdir()) == ["job.json", "visits.parquet"]


def test_python_job_cannot_run_programs_from_tmp(isolated: DockerRunner, view: Path) -> None:
    code = (
        PROBE_HELPERS
        + """
import os, shutil, subprocess
shutil.copy("/bin/true", "/tmp/true")
os.chmod("/tmp/true", 0o755)
attempt("exec_tmp", lambda: subprocess.run(["/tmp/true"], check=True))
attempt("exec_bin", lambda: subprocess.run(["/bin/true"], check=True))
report()
"""
    )

    outcomes = probe(isolated, view, code)

    assert outcomes["exec_tmp"] == "EACCES"
    assert outcomes["exec_bin"] == "ok"


def test_python_job_runs_unprivileged(isolated: DockerRunner, view: Path) -> None:
    code = (
        PROBE_HELPERS
        + """
import ctypes
for line in open("/proc/self/status"):
    key, _, value = line.partition(":")
    if key in ("Uid", "Gid", "Groups", "CapEff", "CapPrm", "CapBnd"):
        outcomes[key] = " ".join(value.split())
# Asked of the kernel: gVisor's /proc/self/status has no NoNewPrivs line.
PR_GET_NO_NEW_PRIVS = 39
outcomes["NoNewPrivs"] = str(ctypes.CDLL(None).prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0))
report()
"""
    )

    status = probe(isolated, view, code)

    assert status["Uid"] == "10001 10001 10001 10001"
    assert status["Gid"] == "10001 10001 10001 10001"
    assert status["Groups"] == "10001"
    assert status["CapEff"] == "0000000000000000"
    assert status["CapPrm"] == "0000000000000000"
    assert status["CapBnd"] == "0000000000000000"
    assert status["NoNewPrivs"] == "1"


def test_python_job_sees_no_host_environment(
    isolated: DockerRunner, view: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_SECRET_KEY", "do-not-leak-4f1c")
    monkeypatch.setenv("SANDBOX_DATABASE_URL", "postgresql://user:do-not-leak-4f1c@db/x")
    code = (
        PROBE_HELPERS
        + """
import os
for name, value in os.environ.items():
    outcomes[name] = value
report()
"""
    )

    environment = probe(isolated, view, code)

    sandbox_names = {name for name in environment if name.startswith("SANDBOX")}
    assert sandbox_names == {"SANDBOX_INPUT", "SANDBOX_TMP"}
    assert not any("do-not-leak" in value for value in environment.values())
    assert set(environment) <= {
        "SANDBOX_INPUT",
        "SANDBOX_TMP",
        "PATH",
        "HOME",
        "HOSTNAME",
        "OPENBLAS_NUM_THREADS",
        "OMP_NUM_THREADS",
        "LC_CTYPE",  # set by Python itself in the C locale (PEP 538)
    }


def test_python_job_fits_sklearn_and_statsmodels(runner: DockerRunner, tmp_path: Path) -> None:
    folder = tmp_path / "view"
    folder.mkdir(mode=0o700)
    x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    noise = [0.1, -0.1, 0.0, 0.1, -0.1, 0.0]
    y = [1.0 + 2.0 * xi + e for xi, e in zip(x, noise, strict=True)]
    pd.DataFrame({"x": x, "y": y}).to_parquet(folder / "points.parquet")
    code = """
    import pandas as pd
    import scipy.stats
    import statsmodels.api as sm
    import statsmodels.formula.api as smf
    from sklearn.linear_model import LinearRegression
    import sandbox_job

    points = sandbox_job.table("points")
    lr = LinearRegression().fit(points[["x"]], points["y"])
    ols = sm.OLS(points["y"], sm.add_constant(points[["x"]])).fit()
    formula = smf.ols("y ~ x", data=points).fit()
    slope = scipy.stats.linregress(points["x"], points["y"]).slope
    coefficients = pd.DataFrame(
        {
            "model": ["sklearn", "statsmodels", "formula", "scipy"],
            "intercept": [lr.intercept_, ols.params["const"], formula.params["Intercept"], None],
            "slope": [lr.coef_[0], ols.params["x"], formula.params["x"], slope],
        }
    )
    sandbox_job.output("coefficients", coefficients, kind="model_summary", count_column=None)
    """
    assert check_python(textwrap.dedent(code)).allowed

    result = run_job(runner, make_spec(folder, code))

    (table,) = result.tables
    assert table.columns == ["model", "intercept", "slope"]
    assert [row[0] for row in table.rows] == ["sklearn", "statsmodels", "formula", "scipy"]
    expected_slope = pytest.approx(1.988571, abs=1e-5)
    for _, intercept, slope in table.rows:
        assert slope == expected_slope
        assert intercept is None or intercept == pytest.approx(1.04, abs=1e-5)


def test_endless_loop_times_out(isolated: DockerRunner, view: Path) -> None:
    spec = make_spec(view, "while True:\n    pass\n", timeout_s=3)
    started = time.monotonic()

    with pytest.raises(JobFailed) as failure:
        run_job(isolated, spec)

    assert failure.value.reason == "timeout"
    assert failure.value.message == "The job timed out after 3 s."
    assert time.monotonic() - started < 15


def test_memory_bomb_is_killed(isolated: DockerRunner, view: Path) -> None:
    code = """
    blocks = []
    while True:
        blocks.append(b"x" * (16 * 1024 * 1024))
    """
    spec = make_spec(view, code, memory_mb=128)

    with pytest.raises(JobFailed) as failure:
        run_job(isolated, spec)

    assert failure.value.reason == "memory"
    assert failure.value.message == "The job exceeded its memory limit of 128 MB."


def test_fork_bomb_hits_pids_limit(isolated: DockerRunner, view: Path) -> None:
    code = (
        PROBE_HELPERS
        + """
import os, time
children = 0
while True:
    try:
        pid = os.fork()
    except OSError as error:
        outcomes["fork"] = errno.errorcode[error.errno]
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    children += 1
outcomes["children"] = str(children)
report()
"""
    )

    if isolated.runtime_setting == "runsc":
        with pytest.raises(JobFailed) as failure:
            probe(isolated, view, code, pids=32)
        # gVisor's kernel runs the job's processes on host threads of its own, counted by
        # the pids limit: the fork past it takes the whole sandbox down, job and all.
        assert failure.value.reason == "malformed_output"
        return

    outcomes = probe(isolated, view, code, pids=32)

    assert outcomes["fork"] == "EAGAIN"
    assert 0 < int(outcomes["children"]) < 32


def test_fork_bomb_times_out_and_runner_serves_next_job(isolated: DockerRunner, view: Path) -> None:
    bomb = """
    import os
    while True:
        try:
            os.fork()
        except OSError:
            pass
    """
    with pytest.raises(JobFailed) as failure:
        run_job(isolated, make_spec(view, bomb, pids=32, timeout_s=4))
    # runc: the bomb spins at the limit until its time is up; gVisor: it takes its
    # sandbox down at the limit (test_fork_bomb_hits_pids_limit).
    ended = "malformed_output" if isolated.runtime_setting == "runsc" else "timeout"
    assert failure.value.reason == ended

    result = run_job(isolated, make_spec(view, "SELECT count(*) AS n FROM visits", language="sql"))

    assert result.tables[0].rows == [[5]]


def test_output_over_cap_fails(runner: DockerRunner, view: Path) -> None:
    code = """
    import pandas as pd
    import sandbox_job
    frame = pd.DataFrame({"n": range(5000), "label": ["some text"] * 5000})
    sandbox_job.output("big", frame)
    """
    spec = make_spec(view, code, max_output_bytes=10_000)

    with pytest.raises(JobFailed) as failure:
        run_job(runner, spec)

    assert failure.value.reason == "output_too_large"
    assert "10000 bytes" in failure.value.message


def test_output_written_around_harness_fails(isolated: DockerRunner, view: Path) -> None:
    # The job finds the harness's own copy of standard output and floods it.
    code = """
    import os
    line = b"A" * 1023 + b"\\n"
    for fd in range(3, 10):
        try:
            os.fstat(fd)
        except OSError:
            continue
        for _ in range(4 * 1024):
            os.write(fd, line)
    """
    spec = make_spec(view, code, max_output_bytes=100_000)

    with pytest.raises(JobFailed) as failure:
        run_job(isolated, spec)

    assert failure.value.reason == "output_too_large"


def test_job_ending_without_result_is_malformed(runner: DockerRunner, view: Path) -> None:
    spec = make_spec(view, "import os\nos._exit(0)\n")

    with pytest.raises(JobFailed) as failure:
        run_job(runner, spec)

    assert failure.value.reason == "malformed_output"


def test_job_printing_much_keeps_stdout_clean(runner: DockerRunner, view: Path) -> None:
    # Analyst prints go to the log file, never to the result channel.
    code = """
    import sys
    import pandas as pd
    import sandbox_job
    for _ in range(2000):
        print("SANDBOX-RESULT {\\"ok\\": true, \\"tables\\": []}")
        print("noise" * 20, file=sys.stderr)
    sandbox_job.output("one", pd.DataFrame({"n": [1]}))
    """

    result = run_job(runner, make_spec(view, code))

    assert [t.name for t in result.tables] == ["one"]


def test_missing_image_is_unavailable(docker_client: Any, view: Path) -> None:
    runner = DockerRunner(docker_client, image="sandbox-runner:does-not-exist")

    with pytest.raises(RunnerUnavailable) as unavailable:
        runner.run(make_spec(view, "SELECT 1", language="sql"))

    assert "sandbox-runner:does-not-exist" in str(unavailable.value)
    assert "python -m runners.image" in str(unavailable.value)


# The SDK leaves the socket of a refused connection to the garbage collector.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_unreachable_engine_is_unavailable(view: Path, tmp_path: Path) -> None:
    import docker

    client = docker.DockerClient(base_url=f"unix://{tmp_path}/no-engine.sock", version="1.41")
    runner = DockerRunner(client)

    with pytest.raises(RunnerUnavailable) as unavailable:
        runner.run(make_spec(view, "SELECT 1", language="sql"))

    assert "not reachable" in str(unavailable.value)
    client.close()
    del unavailable
    gc.collect()  # here, under this test's filter, not in a later test


def test_cleanup_orphans_removes_stopped_containers(
    runner: DockerRunner, docker_client: Any
) -> None:
    orphan = docker_client.containers.create(
        IMAGE_TAG, network_mode="none", labels={LABEL_JOB: "orphan", LABEL_RUNNER: "1"}
    )
    try:
        removed = runner.cleanup_orphans()

        assert removed >= 1
        assert job_containers(docker_client, "orphan") == []
    finally:
        if job_containers(docker_client, "orphan"):
            orphan.remove(force=True)


def test_run_records_its_runtime_and_image(
    isolated: DockerRunner, view: Path, docker_client: Any, runtime: str
) -> None:
    code = PROBE_HELPERS + 'import os\noutcomes["release"] = os.uname().release\nreport()\n'
    image_id = docker_client.images.get(IMAGE_TAG).id

    result = run_job(isolated, make_spec(view, code))
    with pytest.raises(JobFailed) as failure:
        run_job(isolated, make_spec(view, "raise ValueError('no')\n"))

    assert result.isolation == Isolation(runtime=runtime, image_digest=image_id)
    assert failure.value.isolation == result.isolation
    assert image_id.startswith("sha256:")
    # The job saw the kernel of its runtime: gVisor's own under runsc, the host's under runc.
    (table,) = result.tables
    release = dict(table.rows)["release"]
    assert (release != os.uname().release) == (runtime == "runsc")


def test_image_has_no_setuid_or_setgid_files(docker_client: Any, runtime: str) -> None:
    # Run as root so that nothing is hidden from the walk; one file system (-xdev).
    walk = textwrap.dedent(
        """
        import os, stat
        root = os.stat("/").st_dev
        for folder, dirs, files in os.walk("/"):
            dirs[:] = [d for d in dirs if os.lstat(os.path.join(folder, d)).st_dev == root]
            for name in dirs + files:
                path = os.path.join(folder, name)
                mode = os.lstat(path).st_mode
                if not stat.S_ISLNK(mode) and mode & (stat.S_ISUID | stat.S_ISGID):
                    print(path)
        print("walked")
        """
    )

    listed = docker_client.containers.run(
        IMAGE_TAG,
        ["-c", walk],
        entrypoint="python3",
        user="0",
        network_mode="none",
        runtime=runtime,
        remove=True,
    ).decode()

    assert listed.splitlines() == ["walked"]  # no setuid or setgid file


def test_job_can_write_nothing_but_its_tmpfs(isolated: DockerRunner, view: Path) -> None:
    code = (
        PROBE_HELPERS
        + """
import os, stat
outcomes["HOME"] = os.environ.get("HOME", "")
writable = []
for folder, dirs, files in os.walk("/"):
    if folder in ("/proc", "/sys") or folder.startswith(("/proc/", "/sys/")):
        dirs[:] = []
        continue
    for name in [".", *files]:
        path = os.path.normpath(os.path.join(folder, name))
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            continue
        if (stat.S_ISDIR(mode) or stat.S_ISREG(mode)) and os.access(path, os.W_OK):
            writable.append(path)
outside = [p for p in writable if p != "/tmp" and not p.startswith("/tmp/")]
outcomes["writable"] = ",".join(sorted(outside))
outcomes["tmp"] = str("/tmp" in writable)
report()
"""
    )

    outcomes = probe(isolated, view, code)

    assert outcomes["writable"] == ""  # nothing outside the tmpfs, in the image or mounted
    assert outcomes["tmp"] == "True"
    assert outcomes["HOME"] == "/tmp"  # on the tmpfs: nothing else to write a dotfile to
