"""mpickpt against FTI, side by side: the same ranks, sizes and timing, RAM to RAM.

    python benchmarks/peers/fti_side_by_side.py --fti-src DIR [--sizes 16,64,256] [--rounds 3]

``DIR`` is a checkout of FTI's source (see README.md here: nothing is fetched at run time).
FTI is built once into ``--workdir`` with CMake and the ``mpicc`` beside this Python (the same
Open MPI as mpickpt), with ``fti_bench.c`` linked against it. Its checkpoint directories go to
``--shm`` (``/dev/shm``: RAM, as mpickpt's pieces are), one ``Node_size = 1`` node per rank in
groups of 4 (``Local_test``), so that its L2 (partner copy) and L3 (Reed-Solomon) levels
protect against the loss of a rank as mpickpt's schemes do.

Each round runs, per size, FTI at L2 and L3, then ``bench_checkpoint.py`` for mpickpt's
schemes (interleaved, so that all see the same load). Both time a checkpoint from a barrier
until every rank is done, the max over ranks, the median over the repeats after the first; the
first is reported apart. The table pairs each scheme with the FTI level of the same
protection: mirror and stripe with L2, parity, rs and xorset with L3.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from mpickpt.launch import find_mpiexec, mpiexec_command

HERE = Path(__file__).resolve().parent
FAIR = {"parity": 3, "mirror": 2, "stripe": 2, "rs": 3, "xorset": 3}
CONFIG = """[Basic]
Head = 0
Node_size = 1
Ckpt_dir = {root}/local
Glbl_dir = {root}/global
Meta_dir = {root}/meta
Ckpt_L1 = 0
Ckpt_L2 = 0
Ckpt_L3 = 0
Ckpt_L4 = 0
Inline_L2 = 1
Inline_L3 = 1
Inline_L4 = 1
keep_last_ckpt = 0
Group_size = 4
max_sync_intv = 0
ckpt_io = 1
Enable_Staging = 0
Enable_dCP = 0
dCP_Mode = 0
dCP_Block_Size = 16384
Verbosity = 3
[Restart]
Failure = 0
Exec_ID = XXXX-XX-XX_XX-XX-XX
[Injection]
rank = 0
number = 0
position = 0
frequency = 0
[Advanced]
Block_size = 1024
Transfer_size = 16
general_tag = 2612
ckpt_tag = 711
stage_tag = 406
final_tag = 3107
Local_test = 1
lustre_striping_unit = 4194304
lustre_striping_factor = -1
lustre_striping_offset = -1
"""


def build(src: Path, work: Path) -> Path:
    """FTI installed under ``work`` and ``fti_bench`` linked against it; the program's path."""
    prefix, exe = work / "install", work / "fti_bench"
    mpicc = str(Path(find_mpiexec()).parent / "mpicc")
    if not (prefix / "include" / "fti.h").exists():
        flags = ["-DENABLE_OPENSSL=OFF", "-DENABLE_EXAMPLES=OFF", "-DENABLE_FORTRAN=OFF"]
        subprocess.run(
            ["cmake", "-S", str(src), "-B", str(work / "build"), f"-DCMAKE_INSTALL_PREFIX={prefix}",
             f"-DCMAKE_C_COMPILER={mpicc}", f"-DCMAKE_CXX_COMPILER={mpicc}", *flags],
            check=True,
        )  # fmt: skip
        subprocess.run(["make", "-C", str(work / "build"), "-j2", "install"], check=True)
    if not exe.exists():
        lib = next(p for p in (prefix / "lib", prefix / "lib64") if p.exists())
        subprocess.run(
            [mpicc, "-O2", f"-I{prefix / 'include'}", str(HERE / "fti_bench.c"), f"-L{lib}",
             "-lfti", f"-Wl,-rpath,{lib}", "-lz", "-lm", "-o", str(exe)],
            check=True,
        )  # fmt: skip
    return exe


def run_fti(exe: Path, shm: Path, ranks: int, mb: int, level: int, repeats: int) -> list[float]:
    """Seconds of FTI's checkpoints at ``level``, the first one first."""
    root = Path(tempfile.mkdtemp(prefix="fti-", dir=shm))
    try:
        cfg = root / "config.fti"
        cfg.write_text(CONFIG.format(root=root))
        argv = [str(exe), str(cfg), str(mb), str(level), str(repeats)]
        cmd = mpiexec_command(ranks, *argv, btl="self,sm")
        out = subprocess.run(
            cmd, cwd=root, capture_output=True, text=True, timeout=3600, check=True
        ).stdout
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return [float(ln.split()[4]) for ln in out.splitlines() if ln.startswith("fti ")]


def run_mpickpt(ranks: int, mb: int, schemes: list[str], repeats: int) -> dict:
    """``bench_checkpoint.py``'s medians per scheme (its JSON), memcpy included."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        argv = [sys.executable, str(HERE.parent / "bench_checkpoint.py"), "--sizes", str(mb),
                "--schemes", ",".join(schemes), "--repeats", str(repeats), "--copies", "1",
                "--no-h5py", "--png", "", "--json", str(out)]  # fmt: skip
        subprocess.run(mpiexec_command(ranks, *argv, btl="self,sm"), check=True, timeout=3600)
        return json.loads(out.read_text())["results"][0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fti-src", type=Path, required=True, help="FTI's source directory")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "mpickpt-fti")
    ap.add_argument("--shm", type=Path, default=Path("/dev/shm"), help="FTI's checkpoint dirs")
    ap.add_argument("--ranks", type=int, default=8)
    ap.add_argument("--sizes", default="16,64,256", help="MB per rank")
    ap.add_argument("--schemes", default="parity,mirror,stripe,rs,xorset")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    exe = build(args.fti_src.resolve(), args.workdir)
    schemes = args.schemes.split(",")
    levels = sorted({FAIR[s] for s in schemes})
    rows: dict[tuple[int, str], list[float]] = {}
    fti: dict[tuple[int, int], list[float]] = {}
    for r in range(args.rounds):
        for mb in map(int, args.sizes.split(",")):
            load = os.getloadavg()[0]
            for lv in levels:
                t = run_fti(exe, args.shm, args.ranks, mb, lv, args.repeats)
                fti.setdefault((mb, lv), []).append(statistics.median(t[1:]))
                print(f"# round {r}, {mb} MB: FTI L{lv} first {t[0]:.3f} s, then {t[1:]}")
            res = run_mpickpt(args.ranks, mb, schemes, args.repeats)
            for s in res["schemes"]:
                rows.setdefault((mb, s["scheme"]), []).append(statistics.median(s["times"]))
            print(f"# round {r}, {mb} MB done (load average {load:.1f} at its start)")
    print(f"\n{args.ranks} ranks, RAM to RAM, median over rounds of the per-round medians (s)")
    print("| MB/rank | scheme | FTI level | mpickpt s | FTI s | speed-up |")
    print("|---|---|---|---|---|---|")
    for (mb, s), t in sorted(rows.items()):
        ours, theirs = statistics.median(t), statistics.median(fti[(mb, FAIR[s])])
        print(f"| {mb} | {s} | L{FAIR[s]} | {ours:.4f} | {theirs:.4f} | {theirs / ours:.1f}x |")
    print(f"# load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
