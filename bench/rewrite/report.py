"""Report helpers of bench/rewrite.sh (not run on its own).

report.py table RESULTS_TSV SCALE QUERIES FILTERS REPS ITERS SHARES SAME CONFIGS
    one Markdown table per index configuration (medians, speedup, identical, rewritten),
    then the paired per-round off/on ratios
report.py plan AUTO_EXPLAIN_LOG TITLE short|full
    the first auto_explain plan of a shop_order statement in the log excerpt
"""
import csv
import re
import statistics
import sys


def fmt(ms):
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 0.1:
        return f"{ms:.2f}"
    return f"{ms:.3f}"


def table(path, scale, queries, filters, reps, iters, shares, same, configs):
    queries, filters, reps, iters = queries.split(), filters.split(), int(reps), int(iters)
    share = {}
    for part in filter(None, shares.split(";")):
        f, pct, label, fanout = part.split("=")
        share[f] = (pct, label, fanout)
    same = dict(p.split("=", 1) for p in filter(None, same.split(";")))
    configs = [p.split("=", 1) for p in filter(None, configs.split(";"))]
    lat, rew = {}, {}
    for row in csv.DictReader(open(path), delimiter="\t"):
        key = (row["config"], row["query"], row["filter"], row["target"])
        lat.setdefault(key, []).append(float(row["latency_ms"]))
        rew[key] = rew.get(key, 0) + int(row["rewritten"])
    for c, desc in configs:
        print()
        print(f"### indexes: {c} ({desc})")
        print()
        print("| scale (items) | indexes | query | filter (matching orders) | join rows per order "
              "| off ms | on ms | speedup | identical | rewritten |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for q in queries:
            for f in filters:
                off, on = lat.get((c, q, f, "off")), lat.get((c, q, f, "on"))
                if not off or not on:
                    continue
                m_off, m_on = statistics.median(off), statistics.median(on)
                pct, label, fanout = share[f]
                runs = reps * iters
                off_rew = rew.get((c, q, f, "off"))
                print(f"| {int(scale):,} | {c} | {q} | {f}: {label} ({pct}%) | {fanout} "
                      f"| {fmt(m_off)} | {fmt(m_on)} | {m_off / m_on:.2f}× "
                      f"| {same.get(f'{c}-{q}-{f}', '?')} | {rew.get((c, q, f, 'on'), 0)}/{runs}"
                      + (f" (off: {off_rew}!)" if off_rew else "") + " |")
    print()
    print("per-round off/on ratios (paired, same round):")
    for c, _ in configs:
        for q in queries:
            for f in filters:
                off, on = lat.get((c, q, f, "off")), lat.get((c, q, f, "on"))
                if off and on:
                    print(f"  {c} {q}/{f}: " + " ".join(f"{a / b:.2f}" for a, b in zip(off, on)))


def plan(path, title, mode):
    lines = open(path, errors="replace").read().splitlines()
    # The auto_explain message: "... LOG:  duration: X ms  plan:" then tab-indented lines.
    for i, line in enumerate(lines):
        m = re.search(r"duration: ([0-9.]+) ms\s+plan:", line)
        if not m:
            continue
        body = []
        for l in lines[i + 1:]:
            if not l.startswith("\t"):
                break
            body.append(l[1:])
        text = [l for l in body if l.startswith("Query Text:")]
        if not text or "shop_order" not in text[0] or "auto_explain" in text[0]:
            continue
        steps = [l for l in body if not l.startswith("Query Text:")]
        print(f"\n{title} ({m.group(1)} ms): {text[0][len('Query Text: '):]}")
        if mode == "full":
            print("```")
            print("\n".join(steps))
            print("```")
        else:
            nodes = []
            for l in steps:
                s = l.strip()
                if s.startswith("->"):
                    s = s[2:].strip()
                elif l.startswith(" ") or not s or ":" in s.split("(")[0]:
                    continue
                nodes.append(re.sub(r"\s*\(.*$", "", s))
            print("  " + " > ".join(nodes))
        return
    print(f"\n{title}: no plan captured")


if __name__ == "__main__":
    if sys.argv[1] == "table":
        table(*sys.argv[2:11])
    elif sys.argv[1] == "plan":
        plan(*sys.argv[2:5])
    else:
        sys.exit(f"usage: {sys.argv[0]} table|plan ...")
