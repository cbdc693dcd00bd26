"""Tables of the admin command's answers."""

from __future__ import annotations

import time


def render(what: str, data) -> str:
    if what == "status":
        return "\n".join(f"{k:16} " + status_value(k, v) for k, v in data.items())
    if what == "regions":
        # RELAY and EDGE are the lead's, the addresses routing and clients see first;
        # NODES names every node, so that a region's siblings show without a row each
        return table(["ID", "NAME", "COUNTRY", "LAT", "LON", "TAGS", "RELAY", "EDGE", "NODES",
                      "DRAINED"],
                     [[r["id"], r["name"], r["country"], f"{r['lat']:.2f}", f"{r['lon']:.2f}",
                       ",".join(r["tags"]), r["probe_addr"] or "-", r["edge_addr"] or "-",
                       node_list(r.get("nodes", [])), "yes" if r["drained"] else "-"]
                      for r in data]) + (NODES_NOTE if any(r.get("nodes") for r in data) else "")
    if what == "events":
        if not data:
            return "no events"
        return table(["TIME", "REGION", "EVENT", "PEER", "ROUTES", "DETAIL"],
                     [[time.strftime("%H:%M:%S", time.localtime(e["at"]))
                       + f".{int(e['at'] * 1000) % 1000:03d}", e["region"], e["kind"],
                       e["peer"] or "-", e["routes"] or "-", e["detail"]] for e in data])
    if what == "audit":
        if not data:
            return "no audit entries"
        return table(["TIME", "WHO", "ACTION", "TARGET", "DETAIL"],
                     [[time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["at"])),
                       e["actor"], e["action"], e["target"], e["detail"] or "-"]
                      for e in data])
    if what == "rotate-fabric-key":
        return (f"fabric key of epoch {data['epoch']} sent to every relay; it seals in "
                f"{data['seals_in_s']:g} s (epoch {data['sealing_epoch']} until then), the keys "
                f"before it are dropped in {data['retires_in_s']:g} s; accepted now: epochs "
                f"{', '.join(map(str, data['epochs']))}")
    if what in ("drain", "undrain"):
        state = "drained" if data["drained"] else "back in service"
        return (f"{data['region']} {state}; routes v{data['version']}; drained now: "
                f"{', '.join(data['drained_regions']) or 'none'}")
    if what == "channels":
        if not data:
            return "no channel has sessions"
        return table(["ZONE", "CHANNEL", "PUBLISHERS", "SUBSCRIBERS"],
                     [[c["zone"], c["channel"], ",".join(c["publisher_regions"]) or "-",
                       ",".join(c["subscriber_regions"]) or "-"] for c in data])
    if what == "links":
        return table(["SRC", "DST", "RTT_MS", "MIN_RTT_MS", "JITTER_MS", "LOSS", "STATE",
                      "SAMPLES", "COST_MS"],
                     [[x["src"], x["dst"], f"{x['rtt_ms']:.1f}", f"{x['min_rtt_ms']:.1f}",
                       f"{x['jitter_ms']:.2f}",
                       f"{x['loss']:.1%}", x["state"], x["samples"], f"{x['cost_ms']:.1f}"]
                      for x in data])
    if what == "routes":
        head = f"routes of {data['region']} (version {data['version']})\n"
        return head + table(["ZONE", "DST", "NEXT_HOP", "BACKUP", "COST_MS", "PATH"],
                            [[r["zone"], r["dst"], r["next_hop"],
                              f"{r['backup_next_hop'] or '-'} ({r['backup_kind']})",
                              f"{r['cost_ms']:.1f}", " > ".join(r["path"])]
                             for r in data["routes"]])
    if what == "zones":
        return f"policy: {data['policy']}\n" + table(
            ["ZONE", "REGIONS", "CONNECTED", "DESCRIPTION"],
            [[z["name"], len(z["regions"]), z["connected"], z["description"]]
             for z in data["zones"]])
    if what == "plan-failover":
        return render_plan(data)
    if not data["reachable"]:
        return (f"{data['src']} -> {data['dst']} in zone {data['zone']}: unreachable: "
                f"{data['reason']}")
    backup = (f"backup next hop {data['backup_next_hop']} ({data['backup_kind']}-protecting)"
              if data["backup_next_hop"] else "no loop-free backup")
    return (f"{' > '.join(data['path'])}\nzone {data['zone']}, one-way cost "
            f"{data['cost_ms']:.1f} ms, {len(data['path']) - 1} hop(s), {backup}, "
            f"routes v{data['version']}")


NODES_NOTE = ("\nNODES: the region's connected relay nodes, * the lead (its RELAY and EDGE "
              "above), (N) client sessions, xW its share of the region's transit where "
              "load makes it less than 1")


def status_value(key: str, value) -> str:
    if key == "replicas":
        return ", ".join(f"{r['id']} {r['address'] or '-'}"
                         + (" (leader)" if r["leader"] else "")
                         + ("" if r["healthy"] else " (not answering etcd)")
                         for r in value) or "none"
    if key == "store":
        return f"{value['kind']} {value['where']}" + (
            "" if value["healthy"] else f": not answering ({value['error'] or 'no reason'})")
    if key == "leader":
        return value or "none"
    if isinstance(value, dict):
        return ", ".join(f"{n} {c}" for n, c in value.items()) or "none"
    return str(value)


def node_list(nodes: list[dict]) -> str:
    """A region's nodes in a cell: "n1*(3), n2(900 x0.25)", the lead starred, "@c2" the
    controller replica holding its session (with replicas); "-" for none."""
    return ", ".join(
        f"{n['node_id']}{'*' if n['lead'] else ''}({n['sessions']}"
        + (f" x{w:g})" if (w := n.get("transit_weight", 1.0)) != 1.0 else ")")
        + (f"@{n['replica']}" if n.get("replica") else "")
        for n in nodes) or "-"


def render_plan(data: dict) -> str:
    changes = data["changes"]
    moved = [c for c in changes if c["reachable"]]
    lost = [c for c in changes if not c["reachable"]]
    lines = [f"failover plan for {data['failure']} (dry run, routes v{data['version']}):",
             f"  {len(moved)} of {data['routes_total']} routes between surviving regions "
             f"move, {len(lost)} become unreachable; {data['lost_endpoints']} routes start or "
             "end in the failed region"]
    if moved:
        lines.append(table(["ZONE", "SRC", "DST", "DELTA_MS", "OLD_PATH", "NEW_PATH"],
                           [[c["zone"], c["src"], c["dst"], f"{c['delta_ms']:+.1f}",
                             " > ".join(c["old_path"]), " > ".join(c["new_path"])]
                            for c in moved]))
    if lost:
        lines.append("unreachable:")
        lines.append(table(["ZONE", "SRC", "DST", "REASON"],
                           [[c["zone"], c["src"], c["dst"], c["reason"]] for c in lost]))
    return "\n".join(lines)


def table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
              for r in cells]
    return "\n".join(lines)
