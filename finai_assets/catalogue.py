"""The asset catalogue (`docs/assets.md`), written from the loaded definitions.

`python -m finai_assets.catalogue` rewrites the file; `--check` exits 1 when it is out of date.
"""

import argparse
import sys
from pathlib import Path

import dagster as dg

GROUPS = ("raw", "synthetic", "labels", "features", "teacher", "students", "governance", "production")
DEFAULT_PATH = Path(__file__).resolve().parent.parent / "docs" / "assets.md"
HEADER = """# Asset catalogue

Generated from the loaded definitions by `.venv/bin/python -m finai_assets.catalogue`; do not
edit by hand (a test fails when this file and the definitions disagree). Descriptions are the
ones the Dagster UI shows on each asset's page. Upstream keys: *input* = loaded by the IO manager
and passed to the asset; *dep* = a declared dependency the asset reads from storage itself (or
only waits on, as with `leakage_report`, whose blocking checks gate training). How the stages fit
together: [architecture.md](architecture.md).
"""


def _partitions(node) -> str:
    part = node.partitions_def
    if part is None:
        return "none"
    if isinstance(part, dg.StaticPartitionsDefinition):
        return "dataset: " + ", ".join(part.get_partition_keys())
    if isinstance(part, dg.TimeWindowPartitionsDefinition):
        return f"month, from {part.start:%Y-%m}"
    raise TypeError(f"{node.key.to_user_string()}: no catalogue wording for {type(part).__name__}; add one in finai_assets/catalogue.py")


def _mapping(mapping) -> str:
    if isinstance(mapping, dg.AllPartitionMapping):
        return " (every partition)"
    if isinstance(mapping, dg.TimeWindowPartitionMapping):
        lo, hi = mapping.start_offset, mapping.end_offset
        def month(o: int) -> str:
            return "m" if o == 0 else f"m{o:+d}"
        return f" (month {month(lo)})" if lo == hi else f" (months {month(lo)}..{month(hi)})"
    raise TypeError(f"no catalogue wording for {type(mapping).__name__}; add one in finai_assets/catalogue.py")


def _automation(condition) -> str:
    if condition.get_label():
        return condition.get_label()
    if condition.name == "AND":
        return " & ".join(_automation(c) for c in condition.children)
    return condition.name


def _upstream(node) -> list[str]:
    assets_def = node.assets_def
    deps = {key for name, key in assets_def.keys_by_input_name.items()
            if assets_def.node_def.input_def_named(name).dagster_type.is_nothing}
    rows = []
    for key in sorted(node.parent_keys, key=lambda k: k.to_user_string()):
        kind = "dep" if key in deps else "input"
        mapping = node.partition_mappings.get(key)
        rows.append(f"`{key.to_user_string()}`{_mapping(mapping) if mapping is not None else ''} — {kind}")
    return rows


def _section(graph, key) -> str:
    node = graph.get(key)
    lines = [f"### {key.to_user_string()}", ""]
    facts = [f"group `{node.group_name}`", f"partitions: {_partitions(node)}"]
    if node.kinds:
        facts.append("kinds: " + ", ".join(sorted(node.kinds)))
    if node.pools:
        facts.append("pool: " + ", ".join(sorted(node.pools)))
    if node.automation_condition is not None:
        facts.append(f"automation: `{_automation(node.automation_condition)}`")
    lines += ["; ".join(facts) + ".", ""]
    lines += [(node.description or "(no description)").strip(), ""]
    upstream = _upstream(node)
    lines += ["Upstream: none." if not upstream else "Upstream:", *[f"- {u}" for u in upstream]]
    checks = sorted(node.check_keys, key=lambda k: k.name)
    if checks:
        lines += ["", "Checks:"]
        for check in checks:
            spec = graph.get_check_spec(check)
            text = f" — {spec.description}" if spec.description else ""
            lines.append(f"- `{check.name}` ({'blocking' if spec.blocking else 'warning'}){text}")
    return "\n".join(lines).rstrip() + "\n"


def render(definitions: dg.Definitions) -> str:
    graph = definitions.resolve_asset_graph()
    order = [k for k in graph.toposorted_asset_keys if graph.get(k).is_materializable]
    groups = sorted({graph.get(k).group_name for k in order}, key=lambda g: (g not in GROUPS, GROUPS.index(g) if g in GROUPS else 0, g))
    parts = [HEADER, "| group | assets |", "|---|---|"]
    for group in groups:
        names = ", ".join(f"[`{k.to_user_string()}`](#{k.to_user_string()})" for k in order if graph.get(k).group_name == group)
        parts.append(f"| {group} | {names} |")
    for group in groups:
        parts.append(f"\n## {group}\n")
        parts += [_section(graph, k) for k in order if graph.get(k).group_name == group]
    return "\n".join(parts).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m finai_assets.catalogue", description=__doc__)
    parser.add_argument("--path", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--check", action="store_true", help="exit 1 when the file is out of date instead of writing it")
    args = parser.parse_args(argv)
    from finai_assets.definitions import defs

    text = render(defs())
    if args.check:
        current = args.path.read_text() if args.path.exists() else ""
        if current != text:
            print(f"{args.path} is out of date: run .venv/bin/python -m finai_assets.catalogue", file=sys.stderr)
            return 1
        return 0
    args.path.parent.mkdir(parents=True, exist_ok=True)
    args.path.write_text(text)
    print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
