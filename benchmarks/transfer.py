"""Artifact transfer over the bondnet test bed, against a raw socket in the same run.

1. 1 GiB, links not rate-limited: a raw TCP transfer (sendfile -> recv_into -> write,
   no HTTP, no verification) against `get_artifact` (HTTP ranges, every chunk verified,
   fsync and rename) with 8 streams.
2. Links rate-limited: `get_artifact` with 1 stream against 8 streams (the default),
   with the bytes each link carried during the parallel fetch (`bondnet links`).

Run as root from the repository root: `.venv/bin/python benchmarks/transfer.py`.
The last line is the ratio to the raw socket.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BONDNET = REPO.parent / "shared" / "testbed" / "bondnet"
sys.path.insert(0, str(REPO))

RAW_SERVER = """
import os, socket, sys
path = sys.argv[1]
listener = socket.create_server(("198.18.0.1", 0))
print(listener.getsockname()[1], flush=True)
conn, _ = listener.accept()
with open(path, "rb") as f:
    size = os.fstat(f.fileno()).st_size
    sent = 0
    while sent < size:
        sent += os.sendfile(conn.fileno(), f.fileno(), sent, size - sent)
conn.close()
"""
RAW_CLIENT = """
import json, os, socket, sys, time
port, out, size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
start = time.perf_counter()
sock = socket.create_connection(("198.18.0.1", port))
buf = bytearray(4 << 20); view = memoryview(buf)
fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
got = 0
while got < size:
    n = sock.recv_into(view)
    if not n: break
    os.pwrite(fd, view[:n], got); got += n
os.fsync(fd); os.close(fd)
print(json.dumps({"seconds": time.perf_counter() - start, "bytes": got}))
"""
SERVE = """
import sys
from sparkjobs.config import load_config
from sparkjobs.artifacts.server import run_server
run_server(load_config(sys.argv[1]), "spark1")
"""
GET = """
import json, sys, time
from pathlib import Path
from sparkjobs.config import load_config
from sparkjobs.artifacts.ensure import get_artifact
start = time.perf_counter()
config = load_config(sys.argv[1])
got = get_artifact(config, sys.argv[2], Path(sys.argv[3]), streams=int(sys.argv[4]))
print(json.dumps({"seconds": time.perf_counter() - start, "bytes": got.size_bytes}))
"""


class Bed:
    def __init__(self, work: Path):
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKJOBS_")}
        self.env["BONDNET_PREFIX"] = f"sjb{secrets.token_hex(3)}-"
        self.env["PYTHONPATH"] = str(REPO)
        self.work = work

    def bondnet(self, *args: str) -> None:
        subprocess.run([str(BONDNET), *args], env=self.env, check=True, capture_output=True)

    def python(self, node: str, code: str, *args: str) -> list[str]:
        return [str(BONDNET), "exec", node, sys.executable, "-c", code, *args]

    def links(self) -> dict[str, int]:
        """Bytes sent so far by spark1 (the server) on each link."""
        done = subprocess.run(
            [str(BONDNET), "links"], env=self.env, check=True, capture_output=True, text=True
        )
        return {
            line.split()[1]: int(line.split()[3])
            for line in done.stdout.splitlines()
            if line.startswith("spark1 ")
        }

    def run(self, node: str, code: str, *args: str) -> dict[str, float]:
        done = subprocess.run(
            self.python(node, code, *args), env=self.env, capture_output=True, text=True,
            check=True,
        )  # fmt: skip
        result: dict[str, float] = json.loads(done.stdout)
        return result


def raw(bed: Bed, blob: Path, size: int) -> float:
    server = subprocess.Popen(
        bed.python("spark1", RAW_SERVER, str(blob)), env=bed.env, stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    port = server.stdout.readline().strip()
    out = bed.work / "raw.out"
    result = bed.run("spark2", RAW_CLIENT, port, str(out), str(size))
    server.wait()
    server.stdout.close()
    out.unlink()
    return size / result["seconds"]


def sparkjobs(bed: Bed, config: Path, sha256: str, size: int, streams: int) -> float:
    out = bed.work / f"get-{streams}.out"
    result = bed.run("spark2", GET, str(config), sha256, str(out), str(streams))
    out.unlink()
    return size / result["seconds"]


def main() -> None:  # noqa: PLR0915  (one straight script)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    # Large enough that the fixed cost of a fetch (config, SQL, manifest, connections,
    # fsync) is small next to the seconds on the wire.
    parser.add_argument("--limited-size-mib", type=int, default=512)
    parser.add_argument("--rate", default="500mbit")
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--limited-streams", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5, help="best of N")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the test bed creates network namespaces")
    load_at_start = os.getloadavg()[0]

    from sparkjobs.artifacts.register import node_root, register_file
    from sparkjobs.config import load_config
    from sparkjobs.store.engine import open_store
    from sparkjobs.store.schema import upgrade

    with tempfile.TemporaryDirectory(prefix="sjbench-") as folder:
        work = Path(folder)
        bed = Bed(work)
        config_path = work / "sparkjobs.toml"
        config_path.write_text(
            f'data_dir = "{work / "data"}"\ndatabase_url = "sqlite:///{work / "sj.db"}"\n'
            '[nodes.spark1]\nbond_address = "198.18.0.1"\n'
            '[nodes.spark2]\nbond_address = "198.18.0.2"\n'
            f'[artifacts]\ntoken = "{secrets.token_hex(16)}"\n'
        )
        config = load_config(config_path)
        upgrade(config.database)
        sessions = open_store(config.database)

        def make(size: int) -> tuple[str, Path, int]:
            source = work / "source.bin"
            with source.open("wb") as handle:
                for _ in range(size >> 20):
                    handle.write(os.urandom(1 << 20))
            found = register_file(sessions, node_root(config, "spark1"), "spark1", source)
            source.unlink()
            return found.sha256, found.path, size

        big = make(args.size_mib << 20)
        small = make(args.limited_size_mib << 20)
        try:
            bed.bondnet("up")
            server = subprocess.Popen(
                bed.python("spark1", SERVE, str(config_path)),
                env=bed.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip
            assert server.stdout is not None
            server.stdout.readline()
            sha256, blob, size = big
            # Each side's runs back to back, as a node serves fetches one after another:
            # a fetch that directly follows a raw-socket run was measured 20-50 % slower
            # than one that follows a fetch (cause not found), so alternating the two
            # would measure that hand-over rather than the fetch. Best of N for each.
            raws = [raw(bed, blob, size) for _ in range(args.repeat)]
            ours = [
                sparkjobs(bed, config_path, sha256, size, args.streams) for _ in range(args.repeat)
            ]
            raw_bps, ours_bps = max(raws), max(ours)
            server.terminate()
            server.wait()
            server.stdout.close()

            bed.bondnet("up", "--rate", args.rate)
            server = subprocess.Popen(
                bed.python("spark1", SERVE, str(config_path)),
                env=bed.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip
            assert server.stdout is not None
            server.stdout.readline()
            sha256, _, size = small
            ones, manys, splits = [], [], []
            for _ in range(args.repeat):
                ones.append(sparkjobs(bed, config_path, sha256, size, 1))
                before = bed.links()
                manys.append(sparkjobs(bed, config_path, sha256, size, args.limited_streams))
                after = bed.links()
                splits.append([after[link] - before[link] for link in sorted(after)])
            one, many = max(ones), max(manys)
            server.terminate()
            server.wait()
            server.stdout.close()
        finally:
            bed.bondnet("down")

    mb = 1e6
    load = f"{load_at_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    print(f"cores: {os.cpu_count()}; load average (1 min, whole machine): {load}")
    print(f"{args.size_mib} MiB, links unlimited, best of {args.repeat}:")
    print(f"  raw socket, 1 stream, no verification : {raw_bps / mb:8.1f} MB/s")
    print(f"  sparkjobs get, {args.streams} streams, verified  : {ours_bps / mb:8.1f} MB/s")
    print("    each run, raw:", ", ".join(f"{a / mb:.0f}" for a in raws))
    print("    each run, get:", ", ".join(f"{b / mb:.0f}" for b in ours))
    print(f"{args.limited_size_mib} MiB, 2 links at {args.rate} each, best of {args.repeat}:")
    print(f"  sparkjobs get, 1 stream               : {one / mb:8.1f} MB/s")
    print(f"  sparkjobs get, {args.limited_streams} streams              : {many / mb:8.1f} MB/s")
    print(
        "    each run:",
        ", ".join(f"{a / mb:.1f}/{b / mb:.1f}" for a, b in zip(ones, manys, strict=True)),
    )
    print("    MiB per link:", ", ".join("/".join(str(n >> 20) for n in s) for s in splits))
    print(f"  parallel / single stream              : {many / one:8.2f}x")
    print(f"ratio to raw socket: {ours_bps / raw_bps:.2f}")


if __name__ == "__main__":
    main()
