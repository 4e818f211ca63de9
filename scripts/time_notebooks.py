"""Time every notebook under notebooks/ at full size with a cold JAX compilation cache.

    python scripts/time_notebooks.py                 # all notebooks, limit 60 s each
    python scripts/time_notebooks.py 03 05 --limit 90
    python scripts/time_notebooks.py --compiles      # also count XLA compilations per notebook
    python scripts/time_notebooks.py --cells 2       # also list cells that took over 2 s

Each notebook is copied to a temporary directory and executed top to bottom in a fresh kernel
(nbclient), without ``BAYESGMM_NOTEBOOK_FAST`` (the saved, full-size notebooks), with
``BAYESGMM_JAX_CACHE=0`` and no ``JAX_COMPILATION_CACHE_DIR`` in the kernel's environment, so
every program is compiled as on a user's first run. The wall time includes starting the
kernel; the kernel's CPU time (all threads, from the first cell on) is printed beside it, being
steadier than wall time on a loaded machine. Exits with status 1 when any notebook's wall time
is over ``--limit`` seconds.

``--compiles`` runs a first, extra cell that logs JAX's compilations (``jax_log_compiles``)
into a list, and a last one that prints how many programs were compiled, their total XLA
compile time and tracing/lowering time, and the costliest by name. The extra cells add well
under a second.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"

_LISTEN = r"""
import logging as _logging, re as _re
import jax as _jax
_COMPILES, _TRACE = [], [0.0]
class _CompileLog(_logging.Handler):
    _pat = _re.compile(r"Finished XLA compilation of (.+?) in ([0-9.e-]+) sec")
    _trace = _re.compile(r"Finished (?:tracing|jaxpr to MLIR).* in ([0-9.e-]+) sec")
    def emit(self, record):
        msg = record.getMessage()
        m = self._pat.search(msg)
        if m:
            _COMPILES.append((m.group(1), float(m.group(2))))
        t = self._trace.search(msg)
        if t:
            _TRACE[0] += float(t.group(1))
_h = _CompileLog()
for _name in ("jax._src.dispatch", "jax._src.interpreters.pxla", "jax._src.compiler"):
    _lg = _logging.getLogger(_name)
    _lg.addHandler(_h)
    _lg.propagate = False   # keep the log lines out of the notebook's outputs
_jax.config.update("jax_log_compiles", True)
"""

_REPORT = r"""
import collections as _c, json as _json
_by = _c.defaultdict(lambda: [0, 0.0])
for _n, _s in _COMPILES:
    _by[_n][0] += 1
    _by[_n][1] += _s
_top = sorted(_by.items(), key=lambda kv: -kv[1][1])[:12]
print("__COMPILES__" + _json.dumps({"n": len(_COMPILES), "secs": sum(s for _, s in _COMPILES),
                                    "trace": _TRACE[0],
                                    "top": [[n, c, round(s, 2)] for n, (c, s) in _top]}))
"""


def _kernel_env() -> dict:
    env = dict(os.environ)
    env.pop("BAYESGMM_NOTEBOOK_FAST", None)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    env["BAYESGMM_JAX_CACHE"] = "0"
    env["MPLBACKEND"] = "Agg"
    return env


def time_notebook(path: Path, *, compiles: bool, timeout: int, import_from=None):
    """Execute one notebook in a temporary directory; returns (wall seconds, kernel CPU seconds
    after start-up, nb, compile report)."""
    import nbformat
    from nbclient import NotebookClient
    from nbformat.v4 import new_code_cell

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shutil.copy(path, work / path.name)
        nb = nbformat.read(work / path.name, as_version=4)
        if compiles:
            nb.cells.insert(0, new_code_cell(_LISTEN))
            nb.cells.append(new_code_cell(_REPORT))
        # The kernel's CPU time (all threads): steadier than wall time on a shared machine.
        first = "import time as _t\n_cpu0 = _t.process_time()"
        if import_from:
            # Time another checkout (e.g. a `git archive` of an older commit) with this script.
            first += (
                f"\nimport sys\nsys.path.insert(0, {str(import_from)!r})\nimport bayesgmm\n"
                f"assert bayesgmm.__file__.startswith({str(import_from)!r}), bayesgmm.__file__"
            )
        nb.cells.insert(0, new_code_cell(first))
        nb.cells.append(new_code_cell('print("__CPU__", _t.process_time() - _cpu0)'))
        client = NotebookClient(
            nb,
            timeout=timeout,
            kernel_name="python3",
            resources={"metadata": {"path": str(work)}},
        )
        # The kernel inherits this process's environment; set the cold-cache variables there.
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(_kernel_env())
        try:
            t0 = time.perf_counter()
            client.execute()
            seconds = time.perf_counter() - t0
        finally:
            os.environ.clear()
            os.environ.update(saved)
    cpu = None
    for out in nb.cells[-1].outputs:
        if "__CPU__" in out.get("text", ""):
            cpu = float(out["text"].split("__CPU__", 1)[1])
    nb.cells.pop()
    report = None
    if compiles:
        for out in nb.cells[-1].outputs:
            text = out.get("text", "")
            if "__COMPILES__" in text:
                report = json.loads(text.split("__COMPILES__", 1)[1])
    return seconds, cpu, nb, report


def _cell_seconds(cell) -> float | None:
    from datetime import datetime

    ex = cell.get("metadata", {}).get("execution", {})
    a, b = ex.get("iopub.execute_input"), ex.get("shell.execute_reply")
    if not (a and b):
        return None
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return (parse(b) - parse(a)).total_seconds()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", help="prefixes of notebook names to time")
    parser.add_argument("--limit", type=float, default=60.0, help="seconds allowed per notebook")
    parser.add_argument("--compiles", action="store_true", help="count XLA compilations")
    parser.add_argument(
        "--cells", type=float, default=None, metavar="S", help="list cells slower than S seconds"
    )
    parser.add_argument("--timeout", type=int, default=1200, help="per-cell timeout (s)")
    parser.add_argument(
        "--import-from",
        metavar="DIR",
        help="import bayesgmm from DIR in the kernel (time another checkout's code)",
    )
    parser.add_argument(
        "--notebooks", metavar="DIR", default=str(NOTEBOOK_DIR), help="notebook directory"
    )
    args = parser.parse_args(argv)
    paths = sorted(Path(args.notebooks).glob("*.ipynb"))
    paths = [p for p in paths if not args.only or any(p.stem.startswith(o) for o in args.only)]
    if not paths:
        print("no notebook matches", file=sys.stderr)
        return 2
    print(f"load average at start: {os.getloadavg()[0]:.2f} (cpus: {os.cpu_count()})", flush=True)
    over = []
    for path in paths:
        seconds, cpu, nb, report = time_notebook(
            path, compiles=args.compiles, timeout=args.timeout, import_from=args.import_from
        )
        line = f"{path.stem:28s} {seconds:7.1f} s wall {cpu:7.1f} s kernel CPU"
        if report is not None:
            line += (
                f"   {report['n']:4d} compiles, {report['secs']:6.1f} s XLA, "
                f"{report['trace']:5.1f} s tracing+lowering"
            )
        if seconds > args.limit:
            line += f"   OVER {args.limit:g} s"
            over.append(path.stem)
        print(line, flush=True)
        if report is not None:
            for name, count, secs in report["top"]:
                print(f"      {secs:6.2f} s  {count:3d} x  {name}")
        if args.cells is not None:
            for i, cell in enumerate(nb.cells):
                s = _cell_seconds(cell) if cell.cell_type == "code" else None
                if s is not None and s > args.cells:
                    first = cell.source.strip().splitlines()[0][:70] if cell.source else ""
                    print(f"      cell {i:2d} {s:6.1f} s  {first}")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    if over:
        print(f"over the {args.limit:g} s limit: {', '.join(over)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
