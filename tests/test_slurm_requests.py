"""What a SLURM user meets, without a cluster: requests lowered to the partition's nodes (a fake
``sinfo``), SLURM's refusals and never-starting jobs read into one line (a fake ``squeue``), and a
trainer that neither takes a SLURM allocation for several processes nor asks for ``srun``."""
from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

import pytest

from dip_lightning import slurm


def fake_command(bindir: Path, name: str, output: str, code: int = 0) -> None:
    path = bindir / name
    path.write_text(f"#!/bin/sh\ncat <<'EOF'\n{output}\nEOF\nexit {code}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def bindir(tmp_path, monkeypatch):
    d = tmp_path / "bin"
    d.mkdir()
    monkeypatch.setenv("PATH", f"{d}{os.pathsep}{os.environ['PATH']}")
    return d


SINFO = "debug*|2|24105|(null)\ngpu|64|512000|gpu:a100:4(S:0-1)\ngpu|32|256000+|gpu:2"


def test_requests_are_lowered_to_the_partitions_largest_node(bindir):
    fake_command(bindir, "sinfo", SINFO)
    assert [slurm.fit_request(k, w, None) for k, w in (("gpus", 1), ("cpus", 8), ("mem_gb", 32))] == [0, 2, 23]
    assert [slurm.fit_request(k, w, "gpu") for k, w in (("gpus", 1), ("cpus", 8), ("mem_gb", 32))] == [1, 8, 32]
    assert slurm.partition_nodes("gpu") == [{"cpus": 64, "mem_gb": 500, "gpus": 4}, {"cpus": 32, "mem_gb": 250, "gpus": 2}]
    assert slurm.missing_partition("nope") == "error: SLURM has no partition 'nope'; set hydra.launcher.partition to one of debug, gpu (sinfo)"
    assert slurm.missing_partition("gpu") is None and slurm.missing_partition(None) is None


def test_without_sinfo_the_requests_are_as_written(bindir, monkeypatch):
    monkeypatch.setenv("PATH", str(bindir))  # no sinfo anywhere
    assert slurm.fit_request("gpus", 1, None) == 1 and slurm.fit_request("cpus", 8, "gpu") == 8
    fake_command(bindir, "sinfo", "slurm_load_partitions: Unable to contact slurm controller", code=1)
    assert slurm.fit_request("mem_gb", 32, None) == 32 and slurm.missing_partition("x") is None


def test_the_preset_asks_what_the_partition_has(bindir, compose_cfg):
    from hydra import compose, initialize_config_dir

    from dip_lightning.cli import CONFIG_DIR

    fake_command(bindir, "sinfo", SINFO)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        for partition, want in (("null", (0, 2, 23)), ("gpu", (1, 8, 32))):
            cfg = compose("restore", overrides=["hydra/launcher=slurm", f"hydra.launcher.partition={partition}"],
                          return_hydra_config=True)
            launcher = cfg.hydra.launcher
            assert (launcher.gpus_per_node, launcher.cpus_per_task, launcher.mem_gb) == want
            assert launcher._target_ == "hydra_plugins.dip_lightning_slurm.SlurmLauncher"


@pytest.mark.parametrize("stderr, says", [
    ("sbatch: error: Invalid generic resource (gres) specification", "gpus_per_node=0"),
    ("sbatch: error: invalid partition specified: x\nsbatch: error: Batch job submission failed: Invalid partition name "
     "specified", "hydra.launcher.partition"),
    ("sbatch: error: Memory specification can not be satisfied\nsbatch: error: Batch job submission failed: Requested "
     "node configuration is not available", "mem_gb"),
    ("sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified",
     "hydra.launcher.account"),
    ("sbatch: error: something new", "hydra.launcher.* keys"),
])
def test_sbatchs_refusal_names_the_key_to_change(stderr, says):
    assert says in slurm.refusal_hint(stderr)
    assert slurm.sbatch_reason(stderr) == stderr.splitlines()[-1].split("error:", 1)[1].strip()


def test_a_job_that_can_never_start_is_told_apart(bindir):
    fake_command(bindir, "squeue", "12_0|RUNNING|None\n12_1|PENDING|PartitionConfig\n12_2|PENDING|JobArrayTaskLimit\n"
                                   "12_3|CANCELLED|None")
    states = slurm.queue_states({"12"})
    assert {k: v["State"] for k, v in states.items()} == {"12_0": "RUNNING", "12_1": slurm.NEVER, "12_2": "PENDING",
                                                          "12_3": "CANCELLED"}
    fake_command(bindir, "squeue", "slurm_load_jobs error: Unable to contact slurm controller", code=1)
    assert slurm.queue_states({"12"}) is None  # ask again later: no state is made up


def test_the_launcher_reads_an_ended_job_in_one_line(bindir):
    pytest.importorskip("submitit", reason="pip install -e '.[sweeps]'")
    from dip_lightning.slurm_launcher import QueueWatcher, ended_message

    fake_command(bindir, "sacct", "Slurm accounting storage is disabled", code=1)
    fake_command(bindir, "squeue", "7_0|COMPLETED|None\n7_1|CANCELLED|None")
    watcher = QueueWatcher(delay_s=600)
    for job in ("7_0", "7_1", "7_2"):
        watcher.register_job(job)
    watcher.update()
    assert [watcher.get_state(j, mode="cache") for j in ("7_0", "7_1", "7_2")] == ["COMPLETED", "CANCELLED", slurm.GONE]
    assert all(watcher.is_done(j, mode="cache") for j in ("7_0", "7_1", "7_2"))
    line = ended_message("Job 7_1 (task: 0) with path /x\nhas not produced any output (state: CANCELLED)", watcher)
    assert line.startswith("error: SLURM ended job 7_1 without a result (CANCELLED)") and "\n" not in line


def test_the_launcher_waits_for_the_arrays_other_jobs_before_it_stops(bindir, tmp_path):
    """A job ended without a result while another still runs: the multirun stops only after it ends."""
    pytest.importorskip("submitit", reason="pip install -e '.[sweeps]'")
    from dip_lightning.slurm_launcher import wait_for_array

    calls = tmp_path / "calls"
    script = bindir / "squeue"
    script.write_text(f"#!/bin/sh\necho x >> {calls}\n"
                      f"if [ $(wc -l < {calls}) -lt 3 ]; then echo '8_0|RUNNING|None'; else echo '8_0|COMPLETED|None'; fi\n"
                      "echo '8_1|CANCELLED|None'\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    wait_for_array("8", poll_s=0.01)
    assert len(calls.read_text().split()) == 3  # asked until the running job had ended


def test_a_run_in_a_slurm_allocation_is_one_process_without_srun_hints(bindir, compose_cfg, monkeypatch):
    """SLURM_NTASKS=2 (an allocation of two tasks) and an ``srun`` on PATH: the trainer still sees one
    process, and Lightning does not suggest srun."""
    from hydra.utils import instantiate
    from lightning_fabric.plugins.environments import LightningEnvironment

    fake_command(bindir, "srun", "")
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setenv("SLURM_JOB_NAME", "dip")
    cfg = compose_cfg("iters=2", "logger=none", "trainer.enable_progress_bar=false")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = instantiate(cfg.trainer, logger=False)
    assert isinstance(trainer._accelerator_connector.cluster_environment, LightningEnvironment)
    assert trainer.world_size == 1
    assert not [w for w in caught if "srun" in str(w.message)]


def test_a_run_outside_slurm_on_a_slurm_host_prints_no_srun_hint(bindir, compose_cfg, image_file, monkeypatch):
    """``srun`` on PATH, no SLURM variables: a whole run (fit included) warns nothing about srun."""
    from dip_lightning.run import run

    fake_command(bindir, "srun", "")
    for var in [v for v in os.environ if v.startswith("SLURM_")]:
        monkeypatch.delenv(var)
    cfg = compose_cfg(f"image={image_file(16, 16, 3)}", "iters=2", "logger=none", "trainer.enable_progress_bar=false",
                      "snapshot_every=0", "threads=1", "net.channels_down=[8,8]", "net.channels_up=[8,8]",
                      "net.channels_skip=[2,2]")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert run(cfg)["metrics"]["status"] == "completed"
    assert not [w for w in caught if "srun" in str(w.message)]

