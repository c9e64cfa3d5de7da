"""`make image-test`: the built image's own entrypoint, run the way the Kubernetes manifest runs it.

`podman run` needs cgroups that sandboxes (like this project's machines) do
not give, so the container is assembled by hand, as close to the kubelet's as
a chroot gets: new mount and PID namespaces (`unshare`), so the entrypoint is
PID 1 as in a container; the image's layers (`podman image mount`) as the
root, under an overlay whose upper layer is a tmpfs (where the volumes' mount
points are made, as a runtime makes them), then read-only; a fresh `/proc`,
`/dev` and `/dev/shm` bound from the host, a tmpfs on `/tmp` (the manifest's
emptyDir, the one writable path); the manifest's ConfigMap volumes (the caller
policy that `--policy-file` names) written out from deploy/kubernetes and bound
read-only where it mounts them; the image's user (`chroot --userspec`) and
environment (`env -i` plus the image's `Env` and the manifest's); the image's
ENTRYPOINT with the manifest's args. The mounts vanish with the namespaces,
which end with their PID 1; every exit path kills the processes started here.

What it proves, against the embedded upstream on the host over loopback:

1. inside the image, with its own Python: the user is 10001, the root is
   read-only, /tmp is writable, the ConfigMaps' files are readable and
   read-only, and no compiler, pip, pytest, grpcio-tools or embedded upstream
   is there;
2. the bridge (supervisor and `--workers` processes, as in the manifest)
   reports health SERVING, relays a unary call and a stream, and serves
   /metrics;
3. SIGTERM to the bridge as PID 1 (which the kernel delivers only because
   the bridge handles it) with a stream in flight: health turns NOT_SERVING,
   the stream still ends OK with all its text, every worker drains
   ("shutdown complete") and the bridge exits 0.

Run as root (mount, chroot), with the repository's .venv Python (the
generated stubs and PyYAML): `.venv/bin/python deploy/image/smoke.py --image NAME:TAG`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from myrouter.chat.v1 import chat_pb2, chat_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent.parent
MANIFEST = ROOT / "deploy" / "kubernetes" / "bridge.yaml"
MANIFESTS = sorted(MANIFEST.parent.glob("*.yaml"))
"""Where the Deployment's ConfigMaps are (the policy's is policy.yaml)."""
UPSTREAM_MODULE = "myrouter_upstream"
"""The embedded upstream's module: run on the host, and absent from the image."""
CHAT_SERVICE = "myrouter.chat.v1.ChatService"
START_SECONDS = 60.0
EXIT_SECONDS = 60.0
SHUTDOWN_DELAY = "2"
"""Shorter than the manifest's 5 s (no endpoints to update here), long enough to see NOT_SERVING."""
PROMPT = "one two three four five six"
"""The slow stream's prompt: the embedded upstream echoes it one word per chunk."""

PROBE = """
import importlib.util, os, shutil, sys
upstream, wanted = sys.argv[1], sys.argv[2] == "with-upstream"
assert (os.getuid(), os.getgid()) == (10001, 10001), (os.getuid(), os.getgid())
assert os.statvfs("/").f_flag & os.ST_RDONLY, "the root filesystem is writable"
with open("/tmp/probe", "w") as f:
    f.write("writable")
os.remove("/tmp/probe")
for module in ("pip", "setuptools", "pytest", "grpc_tools", "mypy"):
    assert importlib.util.find_spec(module) is None, module + " is in the image"
assert (importlib.util.find_spec(upstream) is not None) == wanted, "embedded upstream: " + upstream
for tool in ("cc", "gcc", "c++", "clang", "make", "git"):
    assert shutil.which(tool) is None, tool + " is in the image"
import bridge.cli, grpc, uvloop  # what serve needs is there
print("image contents: user 10001, read-only root, writable /tmp, runtime dependencies only"
      + (" (and the embedded upstream, as asked)" if wanted else ""))
for path in sys.argv[3:]:  # the ConfigMaps' files: readable by the user, never writable
    assert open(path).read().strip(), path + " is empty"
    try:
        open(path, "a").close()
    except OSError:
        print("volume: " + path + " mounted read-only from the manifest's ConfigMap")
    else:
        raise AssertionError(path + " is writable")
"""


class SmokeError(Exception):
    """The image failed a check; the message says which."""


@dataclasses.dataclass(frozen=True)
class ImageConfig:
    """What a container runtime takes from the image to start it."""

    user: str
    entrypoint: list[str]
    env: list[str]


def image_config(image: str) -> ImageConfig:
    [inspected] = json.loads(_run(["podman", "image", "inspect", image]))
    config = inspected["Config"]
    return ImageConfig(config["User"], config["Entrypoint"], config.get("Env", []))


def _run(argv: Sequence[str]) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


@contextlib.contextmanager
def mounted(image: str) -> Iterator[Path]:
    """The image's layers, merged (podman mounts them read-only)."""
    layers = Path(_run(["podman", "image", "mount", image]).strip())
    try:
        yield layers
    finally:
        subprocess.run(["podman", "image", "unmount", image], check=False, capture_output=True)


# Run by `sh` inside the private mount namespace: $1 the layers, $2 the root, $3 a scratch
# directory, $4 the volumes ("host-dir container-path" lines), then the command. The root is
# an overlay with its upper layer on a tmpfs, as a runtime's is, so that the volumes' mount
# points can be made in it (the image has none); then it is made read-only.
_MOUNTS = """
set -eu
layers=$1 root=$2 scratch=$3 volumes=$4
shift 4
mount -t tmpfs -o mode=0700 tmpfs "$scratch"
mkdir "$scratch/upper" "$scratch/work"
mount -t overlay -o "lowerdir=$layers,upperdir=$scratch/upper,workdir=$scratch/work" \\
    overlay "$root"
echo "$volumes" | while read -r source target; do
    [ -n "$source" ] || continue
    mkdir -p "$root$target"
    mount --bind "$source" "$root$target"
    mount -o remount,bind,ro "$root$target"
done
mount -o remount,ro "$root"
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount --bind /dev "$root/dev"
mount --bind /dev/shm "$root/dev/shm"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/tmp"
exec "$@"
"""


class Container:
    """Processes run from the image's root as its user, in a private mount namespace."""

    def __init__(
        self,
        layers: Path,
        root: Path,
        config: ImageConfig,
        volumes: Sequence[tuple[Path, str]] = (),
    ) -> None:
        self._layers = layers
        self._root = root
        self._scratch = root.with_name(root.name + "-scratch")
        self._scratch.mkdir(exist_ok=True)
        self._config = config
        self._volumes = "\n".join(f"{source} {target}" for source, target in volumes)
        self._started: list[subprocess.Popen[str]] = []

    def start(
        self, argv: Sequence[str], env: Sequence[str] = (), **kwargs: Any
    ) -> subprocess.Popen[str]:
        """Start `argv` in the image as PID 1 of its namespace; the Popen is `unshare`.

        unshare forks PID 1 (see `init_pid`) and exits with its status; sh, env
        and chroot exec, so PID 1 ends up being `argv`.
        """
        chroot = ["env", "-i", *self._config.env, *env]
        chroot += ["chroot", f"--userspec={self._config.user}", str(self._root), *argv]
        command = ["unshare", "--mount", "--propagation", "private", "--pid", "--fork"]
        command += ["--kill-child", "sh", "-c", _MOUNTS, "sh"]
        process = subprocess.Popen(
            [
                *command,
                str(self._layers),
                str(self._root),
                str(self._scratch),
                self._volumes,
                *chroot,
            ],
            text=True,
            **kwargs,
        )
        self._started.append(process)
        return process

    def kill_all(self) -> None:
        """SIGKILL the processes started here, and every process whose root is this container's."""
        for _ in range(50):
            pids = [p.pid for p in self._started if p.poll() is None]
            pids += [pid for pid in _pids() if _root_of(pid) == str(self._root)]
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)


def init_pid(process: subprocess.Popen[str]) -> int:
    """The host's pid of the PID 1 that `process` (unshare) forked."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for pid in _pids():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{pid}/stat").read_text()
                if int(stat.rpartition(")")[2].split()[1]) == process.pid:
                    return pid
        time.sleep(0.05)
    raise SmokeError("unshare started no process")


def pid_in_namespace(pid: int) -> int:
    """What `pid` is in its own PID namespace (the last NSpid field)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    raise SmokeError(f"no NSpid for {pid}")


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _root_of(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/root")
    except OSError:
        return None


@contextlib.contextmanager
def embedded_upstream() -> Iterator[str]:
    """The embedded upstream on the host, on a free loopback port; yields its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", UPSTREAM_MODULE, "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("embedded upstream listening on "):
            raise SmokeError(f"the embedded upstream did not start: {line!r}")
        yield line.split()[-1]
    finally:
        process.terminate()
        process.wait(10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _deployment() -> dict[str, Any]:
    for doc in yaml.safe_load_all(MANIFEST.read_text()):
        if doc and doc["kind"] == "Deployment":
            return dict(doc)
    raise SmokeError(f"no Deployment in {MANIFEST}")


def manifest_container() -> dict[str, Any]:
    [container] = _deployment()["spec"]["template"]["spec"]["containers"]
    return dict(container)


def manifest_volumes(container: dict[str, Any], work: Path) -> list[tuple[Path, str]]:
    """The container's ConfigMap volumes as the kubelet fills them: each ConfigMap's data
    (found among deploy/kubernetes's manifests) written to a directory under `work`, with
    the path it is mounted at. The emptyDir (/tmp) is the container's own tmpfs."""
    config_maps = {
        doc["metadata"]["name"]: doc["data"]
        for path in MANIFESTS
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc["kind"] == "ConfigMap"
    }
    pod = _deployment()["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = []
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "configMap" not in volume:
            continue
        name = volume["configMap"]["name"]
        if name not in config_maps:
            raise SmokeError(f"no ConfigMap {name!r} in {MANIFEST.parent}")
        directory = work / "volumes" / mount["name"]
        directory.mkdir(parents=True)
        directory.chmod(0o755)  # the bound directory's own mode: the image's user reads it
        for key, text in config_maps[name].items():
            (directory / key).write_text(text)
            (directory / key).chmod(0o644)
        mounts.append((directory, str(mount["mountPath"])))
    return mounts


def manifest_env(container: dict[str, Any]) -> list[str]:
    """The manifest's plain values, and a stand-in for the key it takes from its Secret."""
    env = [f"{e['name']}={e['value']}" for e in container.get("env", []) if "value" in e]
    return [*env, "MYROUTER_API_KEY=image-test-service-key"]


def check_contents(container: Container, with_upstream: bool, files: Sequence[str]) -> None:
    """The probe in the image; `files` are the volumes' files, as the container sees them."""
    wanted = "with-upstream" if with_upstream else "without-upstream"
    probe = container.start(
        ["/opt/bridge/bin/python", "-", UPSTREAM_MODULE, wanted, *files],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output, _ = probe.communicate(PROBE, timeout=60)
    if probe.returncode != 0:
        raise SmokeError(f"image contents:\n{output}")
    print(output.strip())


def health(channel: grpc.Channel, service: str) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
    return int(answer.status)


def wait_serving(channel: grpc.Channel, bridge: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        if bridge.poll() is not None:
            raise SmokeError(f"the bridge exited during start-up with status {bridge.returncode}")
        try:
            if all(
                health(channel, name) == health_pb2.HealthCheckResponse.SERVING
                for name in ("", CHAT_SERVICE)
            ):
                print("health: SERVING (overall and myrouter.chat.v1.ChatService)")
                return
        except grpc.RpcError:
            pass
        if time.monotonic() > deadline:
            raise SmokeError(f"health not SERVING within {START_SECONDS:g} s")
        time.sleep(0.2)


def request(prompt: str, **scenario: Any) -> chat_pb2.ChatCompletionRequest:
    message = chat_pb2.ChatCompletionRequest(
        model="myrouter/echo", messages=[chat_pb2.ChatMessage(role="user", content=prompt)]
    )
    if scenario:
        message.extra.update({"scenario": scenario})
    return message


METADATA = (("authorization", "Bearer image-test-caller"), ("x-request-id", "image-test"))


def check_calls(channel: grpc.Channel, metrics_url: str) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    completion = stub.CreateChatCompletion(request("hello image"), metadata=METADATA, timeout=10)
    text = completion.choices[0].message.content
    if "hello image" not in text:
        raise SmokeError(f"unary answer does not echo the prompt: {text!r}")
    chunks = list(stub.StreamChatCompletion(request("hello stream"), metadata=METADATA, timeout=10))
    streamed = "".join(c.choices[0].delta.content for c in chunks if c.choices)
    if "hello stream" not in streamed:
        raise SmokeError(f"stream does not echo the prompt: {streamed!r}")
    print(f"calls: unary and stream relayed through the image ({len(chunks)} chunks)")
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        exposition = response.read().decode()
    if 'bridge_rpcs_total{code="OK",method="CreateChatCompletion"}' not in exposition:
        raise SmokeError("/metrics does not count the unary call")
    print("metrics: /metrics counts the calls (summed over the workers)")


def check_drain(channel: grpc.Channel, bridge: subprocess.Popen[str]) -> None:
    """SIGTERM while a stream is in flight: NOT_SERVING, the stream ends OK, exit status 0."""
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    call = stub.StreamChatCompletion(
        request(PROMPT, chunk_delay=0.4), metadata=METADATA, timeout=30
    )
    received = [next(call)]
    pid = init_pid(bridge)
    if pid_in_namespace(pid) != 1:
        raise SmokeError("the bridge is not PID 1 of its namespace")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + float(SHUTDOWN_DELAY)
    while health(channel, CHAT_SERVICE) != health_pb2.HealthCheckResponse.NOT_SERVING:
        if time.monotonic() > deadline:
            raise SmokeError("health still SERVING after SIGTERM")
        time.sleep(0.05)
    print("SIGTERM to the bridge as PID 1: health NOT_SERVING, stream still in flight")
    received += list(call)
    text = "".join(c.choices[0].delta.content for c in received if c.choices)
    if call.code() is not grpc.StatusCode.OK or PROMPT not in text:
        raise SmokeError(f"the stream in flight did not finish: {call.code()} {text!r}")
    print("drain: the stream in flight ended OK with all its text")
    try:
        code = bridge.wait(EXIT_SECONDS)
    except subprocess.TimeoutExpired:
        raise SmokeError(f"the bridge did not exit within {EXIT_SECONDS:g} s") from None
    if code != 0:
        raise SmokeError(f"the bridge exited with status {code}")


def check_log(log: str, workers: int) -> None:
    drained = log.count("shutdown complete: no call, upstream request or task left")
    if drained != workers or "Traceback" in log:
        raise SmokeError(f"{drained} of {workers} workers drained cleanly")
    print(f"exit: status 0, {workers} workers drained ('shutdown complete')")


def smoke(image: str, work: Path, *, with_upstream: bool) -> None:
    config = image_config(image)
    container_spec = manifest_container()
    port, metrics_port = free_port(), free_port()
    args = [
        *container_spec["args"],
        f"--listen=127.0.0.1:{port}",  # argparse: the last value wins over the manifest's
        f"--metrics-listen=127.0.0.1:{metrics_port}",
        f"--shutdown-delay={SHUTDOWN_DELAY}",
    ]
    workers = int(next(a for a in args if a.startswith("--workers=")).split("=")[1])
    root = work / "root"
    root.mkdir()
    log_path = work / "bridge.log"
    with mounted(image) as layers:
        volumes = manifest_volumes(container_spec, work)
        files = [f"{target}/{f.name}" for source, target in volumes for f in source.iterdir()]
        container = Container(layers, root, config, volumes)
        try:
            check_contents(container, with_upstream, files)
            with embedded_upstream() as upstream_url, log_path.open("w") as log:
                bridge = container.start(
                    [*config.entrypoint, *args, f"--upstream-url={upstream_url}"],
                    env=manifest_env(container_spec),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
                try:
                    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                        wait_serving(channel, bridge)
                        check_calls(channel, f"http://127.0.0.1:{metrics_port}/metrics")
                        check_drain(channel, bridge)
                    check_log(log_path.read_text(), workers)
                except SmokeError:
                    print(f"--- bridge log ---\n{log_path.read_text()}", file=sys.stderr)
                    raise
        finally:
            container.kill_all()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--image", required=True, help="the image to check, e.g. myrouter-bridge:0.1.0"
    )
    parser.add_argument(
        "--embedded-upstream",
        action="store_true",
        help="the image holds the embedded upstream (IMAGE_EMBEDDED_UPSTREAM=true)",
    )
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # in order with stderr
    if os.geteuid() != 0:
        print("image-test runs as root: it mounts the image and chroots into it", file=sys.stderr)
        return 2

    def interrupted(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)  # through every `finally`: processes, mounts, files

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    with tempfile.TemporaryDirectory(prefix="image-test-") as work:
        try:
            smoke(args.image, Path(work), with_upstream=args.embedded_upstream)
        except (SmokeError, subprocess.CalledProcessError) as exc:
            detail = exc.stderr if isinstance(exc, subprocess.CalledProcessError) else ""
            print(f"image-test FAILED: {exc} {detail}", file=sys.stderr)
            return 1
    print(f"image-test passed: {args.image}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
