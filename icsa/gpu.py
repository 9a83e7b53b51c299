"""One GPU per job on a multi-GPU workstation: a file lock per device.

Snakemake's ``--resources gpu=G`` bounds how many GPU jobs run at once but does not say which
device each one gets. ``run_on_device`` closes that gap without a scheduler of our own: it takes
an exclusive ``fcntl.flock`` on ``lock_dir/gpu<id>.lock`` for the first free device, pins the
child command to it with ``CUDA_VISIBLE_DEVICES`` and releases the lock when the child ends.
flock locks belong to open files, so the kernel drops them when their holders die: a crashed or
SIGKILLed job never leaves a device locked. The child inherits the lock descriptor, so a device
stays taken while its job runs even if this wrapper is killed first; on Linux the child also
gets SIGTERM when the wrapper dies.

Inside a SLURM allocation (``SLURM_JOB_ID`` set, no ``--devices``/``$ICSA_GPU_DEVICES``) the
devices are the ones SLURM granted in ``CUDA_VISIBLE_DEVICES``: one (or none) is used as it is,
several are shared out by locks under ``lock_dir/slurm-<jobid>/`` (one namespace per allocation,
because another job on the same node may see its own, different GPU under the same index).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from icsa.errors import InputError

DEVICES_ENV = "ICSA_GPU_DEVICES"
DEFAULT_LOCK_DIR = "/tmp/icsa-gpu-locks"
FORWARDED_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
_DEVICE_RE = re.compile(r"^[A-Za-z0-9_.:-]+$")


def parse_devices(spec: str, source: str = "--devices") -> list[str]:
    """Device ids from ``--devices``: ``"3"`` → ``["0", "1", "2"]``; ``"0,2"``, ``"3,"`` or
    ``"GPU-ab12,GPU-cd34"`` → the listed ids. A bare number is a count, hence ``"3,"`` for the
    single device 3."""
    text = spec.strip()
    if text.isdigit() and "," not in text:
        count = int(text)
        if count < 1:
            raise InputError(f"{source}={spec!r}: expected a device count >= 1 or a list like 0,1")
        return [str(i) for i in range(count)]
    devices = [d.strip() for d in text.split(",") if d.strip()]
    bad = [d for d in devices if not _DEVICE_RE.match(d)]
    if bad or not devices or len(set(devices)) != len(devices):
        raise InputError(
            f"{source}={spec!r}: expected a count or distinct comma-separated device ids "
            "(letters, digits, '.', ':', '-', '_')"
        )
    return devices


def nvidia_smi_devices() -> list[str]:
    """Indices ``0..n-1`` of the GPUs that ``nvidia-smi -L`` lists; empty when there is none."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=30, check=True)
    except (subprocess.SubprocessError, OSError):
        return []
    count = sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))
    return [str(i) for i in range(count)]


def resolve_devices(devices: str | None, env: Mapping[str, str] | None = None) -> list[str]:
    """The device list: ``devices``, else ``$ICSA_GPU_DEVICES``, else ``nvidia-smi -L``."""
    env = os.environ if env is None else env
    if devices:
        return parse_devices(devices)
    if env.get(DEVICES_ENV):
        return parse_devices(env[DEVICES_ENV], source=DEVICES_ENV)
    found = nvidia_smi_devices()
    if not found:
        raise InputError(
            f"no GPU devices: --devices not given, {DEVICES_ENV} not set and `nvidia-smi -L` "
            "lists none; expected e.g. --devices 2 or --devices 0,1"
        )
    return found


def lock_path(lock_dir: str | os.PathLike, device: str) -> Path:
    return Path(lock_dir) / f"gpu{device}.lock"


def try_lock(lock_dir: str | os.PathLike, devices: Sequence[str]) -> tuple[str, int] | None:
    """Lock the first free device without waiting: ``(device, fd)``, or None if all are taken."""
    for device in devices:
        # Read-only suffices for flock and lets other users lock a file that one user created.
        fd = os.open(lock_path(lock_dir, device), os.O_RDONLY | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return device, fd
    return None


@contextlib.contextmanager
def acquire_device(
    devices: Sequence[str],
    lock_dir: str | os.PathLike,
    poll: float = 0.5,
    timeout: float | None = None,
) -> Iterator[tuple[str, int]]:
    """Hold one free device (waiting, polling every ``poll`` s) for the ``with`` block."""
    if not devices:
        raise InputError("devices: expected at least one device id, got none")
    Path(lock_dir).mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    while (held := try_lock(lock_dir, devices)) is None:
        if timeout is not None and time.monotonic() - start > timeout:
            raise TimeoutError(f"no free GPU among {','.join(devices)} after {timeout:.0f} s")
        time.sleep(poll)
    device, fd = held
    try:
        yield device, fd
    finally:
        os.close(fd)  # releases the lock unless a still-running child holds a copy of fd


def _death_signal_setter() -> Callable[[], None] | None:
    """A pre-exec hook that makes the child get SIGTERM when the wrapper dies (Linux prctl).

    libc is looked up here, in the parent: the hook runs between fork and exec, where as little
    as possible should happen.
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None
    return lambda: prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1


def run_child(cmd: Sequence[str], env: Mapping[str, str], pass_fds: Sequence[int] = ()) -> int:
    """Run ``cmd``, forwarding signals to it; its exit status (128+N when killed by signal N)."""
    if not cmd:
        raise InputError("command: expected a command after `--`, got none")
    try:
        # Own process group, so a terminal's Ctrl-C reaches the child once (forwarded by us).
        child = subprocess.Popen(
            list(cmd),
            env=dict(env),
            pass_fds=tuple(pass_fds),
            start_new_session=True,
            preexec_fn=_death_signal_setter(),
        )
    except FileNotFoundError as err:
        raise InputError(f"command {cmd[0]!r}: not found ({err.strerror})") from err
    previous = {}
    for sig in FORWARDED_SIGNALS:
        previous[sig] = signal.signal(sig, lambda num, _frame: child.send_signal(num))
    try:
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 - code if code < 0 else code


def run_on_device(
    cmd: Sequence[str],
    devices: str | None = None,
    lock_dir: str | os.PathLike = DEFAULT_LOCK_DIR,
    poll: float = 0.5,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Run ``cmd`` on one free GPU (``CUDA_VISIBLE_DEVICES``); returns its exit status."""
    env = dict(os.environ if env is None else env)
    slurm_job = env.get("SLURM_JOB_ID")
    if slurm_job and not devices and not env.get(DEVICES_ENV):
        granted = [d for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
        if len(granted) <= 1:
            return run_child(cmd, env)  # SLURM already gave this job its own GPU (or none)
        devices, lock_dir = ",".join(granted), Path(lock_dir) / f"slurm-{slurm_job}"
    device_list = resolve_devices(devices, env)
    with acquire_device(device_list, lock_dir, poll=poll, timeout=timeout) as (device, fd):
        env["CUDA_VISIBLE_DEVICES"] = device
        return run_child(cmd, env, pass_fds=(fd,))
