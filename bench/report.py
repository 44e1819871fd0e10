#!/usr/bin/env python3
"""Print the table of bench/run.sh from hyperfine JSON exports. Standard library only.

usage: report.py META.tsv RESULT.json...

META.tsv has one line per benchmarked command, tab-separated:
    name  program  baseline_name  status  note
status is "ok" (its times are in one of the JSON files) or "skipped" (note says why).
The ratio column is the command's median over the median of baseline_name, the plain
fork+exec of the same program on the host, measured in the same run.
"""
import json
import statistics
import sys


def quantile(times, q):
    """Linear interpolation between closest ranks (numpy's default)."""
    s = sorted(times)
    if len(s) == 1:
        return s[0]
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def load(paths):
    results = {}
    for p in paths:
        try:
            with open(p) as f:
                data = json.load(f)
        except FileNotFoundError:
            continue
        for r in data.get("results", []):
            times = r.get("times") or []
            if not times:
                continue
            results[r["command"]] = {
                "median": statistics.median(times) * 1e3,
                "p90": quantile(times, 0.90) * 1e3,
                "p99": quantile(times, 0.99) * 1e3,
                "min": min(times) * 1e3,
                "max": max(times) * 1e3,
                "runs": len(times),
            }
    return results


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    meta = []
    with open(sys.argv[1]) as f:
        for line in f:
            line = line.rstrip("\n")
            if line:
                name, program, base, status, note = (line.split("\t") + [""] * 5)[:5]
                meta.append((name, program, base, status, note))
    results = load(sys.argv[2:])

    head = ("command", "median", "p90", "p99", "min", "max", "runs", "× fork+exec")
    rows = []
    notes = []
    for program in dict.fromkeys(m[1] for m in meta):
        for name, prog, base, status, note in meta:
            if prog != program:
                continue
            r = results.get(name)
            if status != "ok" or r is None:
                rows.append((name, "skipped", "", "", "", "", "", ""))
                notes.append(f"{name}: skipped: {note or 'no result'}")
                continue
            b = results.get(base)
            ratio = f"{r['median'] / b['median']:.1f}" if b and b["median"] > 0 else "-"
            rows.append((name, f"{r['median']:.2f}", f"{r['p90']:.2f}", f"{r['p99']:.2f}",
                         f"{r['min']:.2f}", f"{r['max']:.2f}", str(r["runs"]), ratio))
            if note:
                notes.append(f"{name}: {note}")
        rows.append(None)
    if rows and rows[-1] is None:
        rows.pop()

    widths = [max(len(head[i]), *(len(r[i]) for r in rows if r)) for i in range(len(head))]

    def fmt(r):
        cells = [r[0].ljust(widths[0])] + [r[i].rjust(widths[i]) for i in range(1, len(r))]
        return "  ".join(cells).rstrip()

    print("times in ms (hyperfine -N: wall time of one complete run of the command)")
    print(fmt(head))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("" if r is None else fmt(r))
    for n in notes:
        print("note: " + n)


if __name__ == "__main__":
    main()
