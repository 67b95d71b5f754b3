"""Run every notebook in full mode and check the figures its prose states (``make check-full``).

Each notebook in ``solutions/`` is copied with its folder into a fresh temporary directory (the sources
are never touched) and executed there with nbclient in full mode (``DLCOURSE_FAST`` and nbgrader's
variables removed), with ``DLCOURSE_CLAIMS`` naming a file that collects the notebook's
:func:`dlcourse.claims.claim` lines. The check fails if a notebook raises or a claim is out of its range,
and writes its results as a Markdown table to ``bench/full_mode.md``.

    python scripts/check_full.py                       # every notebook
    python scripts/check_full.py 02_noise_schedules    # some of them, by name
    python scripts/check_full.py --output /tmp/x.md --solutions path/to/solutions

Run it on an idle machine: the seconds in the table are the full-mode running times.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FULL_MODE_UNSET = ("DLCOURSE_FAST", "NBGRADER_EXECUTION")


@dataclass
class Result:
    """One notebook's full-mode run."""

    notebook: str
    seconds: float
    claims: list[dict] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(c.get("ok") is True for c in self.claims)


def read_claims(path: Path) -> list[dict]:
    """The claims a notebook recorded: one ``{"name", "value", "low", "high", "ok"}`` per JSON line.

    A line that is not a claim becomes a failed claim named ``"(unreadable line N)"``; ``ok`` is
    recomputed from the value and the range, so a line can never pass what it does not show.
    """
    if not path.exists():
        return []
    claims = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            value, low, high = float(raw["value"]), float(raw["low"]), float(raw["high"])
            ok = math.isfinite(value) and low <= value <= high
            claims.append({"name": str(raw["name"]), "value": value, "low": low, "high": high, "ok": ok})
        except (ValueError, KeyError, TypeError):
            claims.append({"name": f"(unreadable line {n})", "value": math.nan, "low": math.nan,
                           "high": math.nan, "ok": False})
    return claims


def machine() -> str:
    """A short description of this machine: CPU model, cores, load when asked."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{model}, {os.cpu_count()} cores"
    try:
        text += f", load {Path('/proc/loadavg').read_text().split()[0]} at the start"
    except OSError:
        pass
    return text


def _cell_error(nb) -> str | None:
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return f"cell {i}: {out.get('ename')}: {out.get('evalue')}"
    return None


def run_notebook(path: Path, timeout: float = 600) -> Result:
    """Execute the notebook at ``path`` in full mode in a temporary copy of its folder."""
    import nbformat
    from nbclient import NotebookClient

    saved = {k: os.environ.get(k) for k in (*FULL_MODE_UNSET, "DLCOURSE_CLAIMS", "MPLBACKEND", "PYTHONPATH")}
    with tempfile.TemporaryDirectory(prefix="dlcourse-full-") as tmp:
        work = Path(tmp) / path.parent.name
        shutil.copytree(path.parent, work)
        claims_file = Path(tmp) / "claims.jsonl"
        for k in FULL_MODE_UNSET:
            os.environ.pop(k, None)
        os.environ["DLCOURSE_CLAIMS"] = str(claims_file)
        os.environ["MPLBACKEND"] = "Agg"
        # the kernel runs in the copy: make it import this checkout's dlcourse, whatever is installed
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), saved["PYTHONPATH"]) if p)
        start = time.perf_counter()
        error = None
        try:
            nb = nbformat.read(work / path.name, as_version=4)
            client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                                    resources={"metadata": {"path": str(work)}})
            client.execute()
            error = _cell_error(nb)
        except Exception as err:  # noqa: BLE001 - a timeout or a dead kernel is a failed notebook
            error = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        seconds = time.perf_counter() - start
        return Result(path.stem, seconds, read_claims(claims_file), error)


def _fmt(x: float) -> str:
    return f"{x:.3g}" if math.isfinite(x) else str(x)


def earlier_rows(text: str, ran: set[str]) -> list[str]:
    """The rows of an earlier ``bench/full_mode.md`` (its text) for the notebooks not in ``ran``.

    Each row carries its own date and machine, so a run of some notebooks keeps the others' last results.
    """
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 8 and cells[0][:1].isdigit() and cells[2] not in ran:
            rows.append(line)
    return rows


def markdown_table(results: list[Result], date: str, machine_text: str, total: int | None = None,
                   earlier: list[str] = ()) -> str:
    """The results as ``bench/full_mode.md``: one row per claim (one per notebook without claims).

    ``total``: how many notebooks ``solutions/`` holds, when only some of them ran. ``earlier``: rows of the
    notebooks that did not run, from the last table (``earlier_rows``), kept beside the new ones.
    """
    ran = f"{len(results)} of the {total} notebooks" if total and total != len(results) else "every notebook"
    if earlier:
        ran += " (the rows of the others are from their own last run, with its date)"
    lines = ["# Full-mode check", "",
             f"Written by `make check-full` (`scripts/check_full.py`): {ran} in `solutions/` run in full "
             "mode, each figure its prose states checked against its range. Do not edit by hand.", "",
             f"- date: {date}",
             f"- result: {'all passed' if all(r.ok for r in results) and all(row.endswith('| yes |') for row in earlier) else 'FAILED'}",
             "",
             "| date | machine | notebook | seconds | claim | value | range | ok |",
             "|---|---|---|---|---|---|---|---|"]
    day = date.split(" ")[0]
    for r in results:
        rows = r.claims or [None]
        for c in rows:
            if c is None:
                claim, value, span = "(no claims)", "", ""
                ok = "yes" if r.error is None else "no"
            else:
                claim, value, span = c["name"], _fmt(c["value"]), f"{_fmt(c['low'])} to {_fmt(c['high'])}"
                ok = "yes" if c["ok"] and r.error is None else "no"
            lines.append(f"| {day} | {machine_text} | {r.notebook} | {r.seconds:.0f} | {claim} | {value} | {span} | {ok} |")
        if r.error:
            lines.append(f"| {day} | {machine_text} | {r.notebook} | {r.seconds:.0f} | (error) | {r.error.replace('|', '/')[:200]} "
                         "| | no |")
    header, rows = lines[:9], lines[9:] + list(earlier)
    rows.sort(key=lambda row: row.split("|")[3].strip())          # by notebook; a notebook's rows keep their order
    return "\n".join(header + rows) + "\n"


def notebooks(solutions: Path, names: list[str]) -> list[Path]:
    found = sorted(solutions.glob("*/*.ipynb"))
    found = [p for p in found if ".ipynb_checkpoints" not in p.parts and p.stem == p.parent.name]
    if names:
        missing = sorted(set(names) - {p.stem for p in found})
        if missing:
            raise SystemExit(f"notebooks: no notebook named {missing} in {solutions}")
        found = [p for p in found if p.stem in names]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebook names (default: all)")
    parser.add_argument("--solutions", type=Path, default=ROOT / "solutions")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "full_mode.md")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per cell")
    args = parser.parse_args(argv)

    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine_text = machine()
    results = []
    total = len(notebooks(args.solutions, []))
    for path in notebooks(args.solutions, args.names):
        print(f"{path.stem} ...", flush=True)
        r = run_notebook(path, args.timeout)
        results.append(r)
        for c in r.claims:
            print(f"  {'ok  ' if c['ok'] else 'FAIL'} {c['name']}: {_fmt(c['value'])} "
                  f"(expected {_fmt(c['low'])} to {_fmt(c['high'])})")
        print(f"  {'error: ' + r.error if r.error else 'ran'} in {r.seconds:.0f} s", flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    earlier = earlier_rows(args.output.read_text(encoding="utf-8"), {r.notebook for r in results}) \
        if args.output.is_file() else []
    args.output.write_text(markdown_table(results, date, machine_text, total, earlier), encoding="utf-8")
    failed = [r.notebook for r in results if not r.ok]
    print(f"wrote {args.output}; " + (f"FAILED: {', '.join(failed)}" if failed else "all passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
