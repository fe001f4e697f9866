"""The package's import graph (grimp, as import-linter reads it: every import statement, those
inside functions too): its modules, import cycles and levels (a module's level is 1 + the highest
level among what it imports), printed one level a line from the top.

    python scripts/import_graph.py            # exit code 1 when there is a cycle
"""
from __future__ import annotations

import argparse
import functools
import sys

import grimp


def graph(package: str = "dip_lightning") -> dict[str, set[str]]:
    """Each module of ``package`` -> the modules of ``package`` it imports."""
    g = grimp.build_graph(package)
    return {m: set(g.find_modules_directly_imported_by(m)) for m in sorted(g.modules)}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other in a loop (strongly connected, more than one)."""
    order, low, stack, on, found, count = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        order[v] = low[v] = count[0]
        count[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in order:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], order[w])
        if low[v] == order[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(edges)))
    for v in edges:
        if v not in order:
            visit(v)
    return found


def levels(edges: dict[str, set[str]]) -> dict[str, int]:
    """Each module's level (no cycles): 1 for one that imports nothing of the package."""

    @functools.lru_cache(maxsize=None)
    def level(m: str) -> int:
        return 1 + max((level(w) for w in edges[m]), default=0)

    return {m: level(m) for m in edges}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--package", default="dip_lightning")
    args = p.parse_args(argv)
    edges = graph(args.package)
    loops = cycles(edges)
    for group in loops:
        print("cycle:", " -> ".join(group))
    if loops:
        return 1
    lv = levels(edges)
    top = max(lv.values())
    print(f"{len(edges)} modules, {sum(map(len, edges.values()))} imports, 0 cycles, {top} levels")
    for n in range(top, 0, -1):
        print(f"{n:3d}  " + " ".join(m.removeprefix(args.package + ".") for m in edges if lv[m] == n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
