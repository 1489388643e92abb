"""The tables of ``cluster.py --layout spread`` (``_spread.py`` runs it): per node, per set, per
Redis shard, and the ratios of one set against another."""

from __future__ import annotations

import argparse
import os

from _report import fmt_int, loss_note, median, pct, table
from _servers import HOST
from _spread import NODES, PHASES, RATIOS, NodeSet, SpreadRep


def good(reps: list[SpreadRep]) -> list[SpreadRep]:
    return [r for r in reps if r.done] or reps


def print_per_node(sets: list[NodeSet]) -> None:
    rows = []
    for phase, title in PHASES.items():
        for nodeset in sets:
            reps = good(nodeset.reps.get(phase, []))
            for j in range(len(nodeset.nodes)) if reps else ():
                topics = [t for r in reps if (t := r.topics[j]) is not None]
                rows.append(
                    [
                        title,
                        f"{nodeset.name} ({nodeset.revision})",
                        "ABC"[j],
                        f"{len(nodeset.node_channels(j)):,}",
                        fmt_int(median(topics)) if topics else "— (no such metric)",
                        fmt_int(median([r.events[j] for r in reps])),
                        fmt_int(median([r.k for r in reps])),
                        f"{median([r.events[j] / r.k for r in reps]):.3f}",
                        f"{median([r.node_cpu[j] / r.k * 1e6 for r in reps]):.1f}",
                    ]
                )
    print("\n## Per node: medians of the repetitions\n")
    print(
        table(
            [
                "phase",
                "code",
                "node",
                "channels with subscribers on it",
                "switchboard_broker_topics",
                "events decoded",
                "messages published (all nodes)",
                "events decoded ÷ published",
                "node CPU µs per published message",
            ],
            rows,
        )
    )


def set_row(title: str, nodeset: NodeSet, reps: list[SpreadRep], discarded: int) -> list[str]:
    ok = good(reps)
    secs = [r.secs for r in ok]
    return [
        title,
        f"{nodeset.name} ({nodeset.revision})",
        f"{ok[0].k:,} x {len(ok)}",
        fmt_int(median([r.publish_rate for r in ok])),
        f"{median([r.share_decoded for r in ok]):.3f}",
        f"{median([r.us_per_message for r in ok]):.1f}",
        f"{median([r.redis_us_per_message for r in ok]):.1f}",
        pct(median([sum(r.node_cpu) / s for r, s in zip(ok, secs, strict=True)])),
        pct(median([r.client_cpu / s for r, s in zip(ok, secs, strict=True)])),
        pct(median([r.others_cpu / s for r, s in zip(ok, secs, strict=True)])),
        loss_note(reps, discarded, "disturbed"),
    ]


def print_spread(sets: list[NodeSet], args: argparse.Namespace) -> None:
    """Per node, per code version, and after ÷ before."""
    print_per_node(sets)
    rows = [
        set_row(title, s, s.reps[phase], s.discarded.get(phase, 0))
        for phase, title in PHASES.items()
        for s in sets
        if s.reps.get(phase)
    ]
    print("\n## Per code version: the three nodes together, medians\n")
    headers = ["phase", "code", "K x reps", "messages/s", "events decoded per node ÷ published"]
    headers += ["node CPU µs per message (3 nodes)", "Redis CPU µs per message", "nodes' CPU"]
    print(table([*headers, "load client CPU", "others' CPU", "loss (notes)"], rows))
    print_per_shard(sets)
    by_name = {s.name: s for s in sets}
    if "before" in by_name:
        heading = "Redis Cluster ÷ one Redis" if args.redis_shards else "after ÷ before"
        print_ratios(by_name["before"], by_name["after"], heading)
    print(
        f"\n{args.channels:,} channels, {args.subscribers_per_channel} tokenless subscriber(s)"
        f" each, channel c on node c mod {NODES}; message i to channel i mod {args.channels:,}"
        f" through node (i div {NODES}) mod {NODES}. This machine has {os.cpu_count()} CPUs:"
        " the nodes, Redis, the load clients and the publisher share them."
    )


def print_per_shard(sets: list[NodeSet]) -> None:
    """Each Redis master's CPU and commands per published message."""
    rows = []
    for phase, title in PHASES.items():
        for nodeset in sets:
            reps = good(nodeset.reps.get(phase, []))
            if not reps:
                continue
            for j, rds in enumerate(nodeset.redis):
                share = median([r.shard_cpu[j] / max(r.redis_cpu, 1e-9) for r in reps])
                rows.append(
                    [
                        title,
                        f"{nodeset.name} ({nodeset.revision})",
                        f"{HOST}:{rds.port}",
                        f"{median([r.shard_cpu[j] / r.k * 1e6 for r in reps]):.1f}",
                        pct(share),
                        pct(median([r.shard_cpu[j] / r.secs for r in reps])),
                        calls_per_message(reps, j),
                    ]
                )
    if rows:
        print("\n## Per Redis master: medians of the repetitions\n")
        headers = ["phase", "code", "master", "Redis CPU µs per published message"]
        headers += ["share of the set's Redis CPU", "its CPU use", "commands per message"]
        print(table(headers, rows))


def calls_per_message(reps: list[SpreadRep], j: int) -> str:
    """Commands master ``j`` served per published message, by name (the most first)."""
    messages = sum(r.k for r in reps)
    calls: dict[str, int] = {}
    for r in reps:
        for name, count in r.shard_calls[j].items():
            calls[name] = calls.get(name, 0) + count
    return ", ".join(
        f"{name.upper()} {count / messages:.2f}"
        for name, count in sorted(calls.items(), key=lambda kv: -kv[1])
        if count / messages >= 0.02
    )


def print_ratios(before: NodeSet, after: NodeSet, heading: str) -> None:
    rows = []
    for phase, title in PHASES.items():
        b, a = good(before.reps.get(phase, [])), good(after.reps.get(phase, []))
        if not a or not b:
            continue
        for what, attr, fmt in RATIOS:
            vb = median([getattr(r, attr) for r in b])
            va = median([getattr(r, attr) for r in a])
            rows.append([title, what, fmt.format(vb), fmt.format(va), f"{va / vb:.2f}"])
    print(f"\n## {heading}, medians\n")
    print(table(["phase", "figure", "before", "after", "after ÷ before"], rows))
