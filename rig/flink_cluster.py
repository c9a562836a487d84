"""Operate the hot-path job on the local standalone Flink cluster, one command per step.

    python -m rig.flink_cluster start                 # cluster up, web UI http://127.0.0.1:8081
    python -m rig.flink_cluster submit [--from-savepoint URI|latest] [--job FILE]
    python -m rig.flink_cluster list
    python -m rig.flink_cluster savepoint JOB_ID      # savepoint, job keeps running
    python -m rig.flink_cluster stop-job JOB_ID       # stop with savepoint (prints its URI)
    python -m rig.flink_cluster resume [URI|latest]   # = submit --from-savepoint
    python -m rig.flink_cluster savepoints            # savepoints kept on S3, newest last
    python -m rig.flink_cluster cancel JOB_ID
    python -m rig.flink_cluster stop                  # cluster down

Submitting goes through Flink's own CLI (``flink run -py``), which builds the Python job
graph; the rest is ``btcpred.adapters.flink_rest`` (the JobManager's REST API), which the
``btcpred job`` command drives against any cluster.
Savepoints go to ``flink.savepoint_dir`` (the S3 emulator locally). The job reads the
same typed config as every other process (``--config``, ``BTCPRED_*``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from btcpred.adapters.flink_rest import (  # noqa: F401 - the rig's callers use them from here
    DEFAULT_JOBMANAGER,
    TERMINAL,
    ClusterError,
    JobInfo,
    cancel,
    list_jobs,
    list_savepoints,
    resolve_savepoint,
    rest,
    running_jobs,
    savepoint_bytes,
    savepoint_contents,
    stop_with_savepoint,
    trigger_savepoint,
    wait_running,
    wait_state,
)
from btcpred.common.config import Settings, load_settings
from deploy import services
from rig import stack

REPO = Path(__file__).resolve().parents[1]

JOB_FILE = REPO / services.FLINK_JOB_FILE


def submit(
    settings: Settings,
    env: dict[str, str] | None = None,
    from_savepoint: str | None = None,
    job_file: Path = JOB_FILE,
    allow_non_restored: bool = False,
    timeout_s: float = 180,
    code_dir: Path | None = None,
) -> str:
    """``flink run -d`` of the Python job; returns the job id. ``code_dir``: an earlier commit's code
    (``rig.legacy_tree``), first on the client's and the workers' path, before the installed package."""
    py = sys.executable
    cmd = ["bash", str(stack.flink_home() / "bin" / "flink"), "run", "-d"]
    if from_savepoint:
        cmd += ["-s", resolve_savepoint(settings, from_savepoint)]
        if allow_non_restored:
            cmd.append("--allowNonRestoredState")
    cmd += ["-py", str(job_file), "-pyexec", py, "-pyclientexec", py]
    if code_dir is not None:
        cmd += ["-pypath", str(code_dir)]  # the workers' PYTHONPATH (they run on this machine)
    run_env = {
        **(env or os.environ),
        **stack.flink_env(settings),
        "PYTHONPATH": str(code_dir or REPO),
        "BTCPRED_FLINK__SHIP_CONNECTOR_JAR": "false",
    }  # on the cluster's classpath (stack.flink_lib_dir)
    out = subprocess.run(cmd, env=run_env, cwd=REPO, capture_output=True, text=True, timeout=timeout_s)
    job_id = next((line.split()[-1] for line in out.stdout.splitlines() if "JobID" in line), None)
    if out.returncode != 0 or not job_id:
        raise ClusterError(f"flink run failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return job_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None)
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("start")
    sub.add_parser("stop")
    sub.add_parser("list")
    sub.add_parser("savepoints")
    p_submit = sub.add_parser("submit")
    p_submit.add_argument("--from-savepoint", default=None, help="a savepoint URI or 'latest'")
    p_submit.add_argument("--allow-non-restored-state", action="store_true")
    p_submit.add_argument("--job", type=Path, default=JOB_FILE, help="the job's Python file (a newer version)")
    p_resume = sub.add_parser("resume")
    p_resume.add_argument("savepoint", nargs="?", default="latest")
    p_resume.add_argument("--job", type=Path, default=JOB_FILE)
    for name in ("savepoint", "stop-job", "cancel"):
        sub.add_parser(name).add_argument("job_id")
    args = parser.parse_args(argv)
    settings = load_settings(args.config)
    try:
        if args.action == "start":
            return stack.main((["--config", args.config] if args.config else []) + ["start", "--with-flink-cluster"])
        if args.action == "stop":
            stack.flink_service(settings).stop()
            print("flink cluster: stopped")
        elif args.action == "list":
            for job in list_jobs():
                print(
                    f"{job.job_id}  {job.state:10s} {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(job.start_time_ms / 1000))}  {job.name}"
                )
        elif args.action == "savepoints":
            for uri, size, modified in list_savepoints(settings):
                print(f"{uri}  {size:>10d} B  {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(modified))}")
        elif args.action in ("submit", "resume"):
            savepoint = args.from_savepoint if args.action == "submit" else args.savepoint
            job_id = submit(
                settings,
                from_savepoint=savepoint,
                job_file=args.job,
                allow_non_restored=getattr(args, "allow_non_restored_state", False),
            )
            wait_running(job_id)
            print(job_id)
        elif args.action == "savepoint":
            print(trigger_savepoint(settings, args.job_id))
        elif args.action == "stop-job":
            print(stop_with_savepoint(settings, args.job_id))
        elif args.action == "cancel":
            cancel(args.job_id)
            print(f"{args.job_id}: cancelled")
    except ClusterError as exc:
        print(f"flink_cluster: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
