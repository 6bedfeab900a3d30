#!/usr/bin/env python3
"""Fails when modules of the crate import each other, directly or through others.

A module is a source file under src/ (src/a.rs and src/a/mod.rs are `a`, src/a/b.rs is `a::b`).
Module X depends on module Y when X names a path that resolves into Y: `crate::…`, `super::…`,
`self::…`, or a child module's name, in a `use` tree or inline. A path resolves to the longest
prefix that is a module, so `super::Thing` in a child names its parent: a child that takes items
from its parent's file while the parent uses the child is a cycle too. Declaring a child
(`mod x;`) is not a dependency; code after `#[cfg(test)]` is not read.

Usage: scripts/check-module-cycles.py [SRC_DIR]   (default: src). Exit 1 and the cycles when
there are any; exit 0 and the module count otherwise.
"""
import re
import sys
from pathlib import Path

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
PATH = re.compile(rf"\b(?:crate|super|self|{IDENT})(?:::{IDENT})+")


def modules(src: Path) -> dict[tuple[str, ...], Path]:
    found = {}
    for f in sorted(src.rglob("*.rs")):
        parts = list(f.relative_to(src).with_suffix("").parts)
        if parts in (["lib"], ["main"]):
            parts = []
        elif parts[-1] == "mod":
            parts = parts[:-1]
        found[tuple(parts)] = f
    return found


def code_of(path: Path) -> str:
    text = path.read_text()
    text = re.sub(r"//[^\n]*", "", text)  # comments (doc comments name paths too)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)  # strings
    cut = text.find("#[cfg(test)]")
    return text if cut < 0 else text[:cut]


def expand_use(tree: str) -> list[str]:
    """`a::{b, c::{d, e}}` → [a::b, a::c::d, a::c::e]."""
    tree = re.sub(r"\s+", "", tree)
    out = []

    def walk(prefix: str, rest: str):
        i = rest.find("{")
        if i < 0:
            out.append(prefix + rest)
            return
        head, body = rest[:i], rest[i + 1 : -1]
        depth, start = 0, 0
        for j, ch in enumerate(body + ","):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                item = body[start:j]
                if item:
                    walk(prefix + head, item)
                start = j + 1

    walk("", tree)
    return [re.sub(r"\bas\w+$", "", p) for p in out]


def dependencies(mods: dict) -> dict:
    deps = {m: set() for m in mods}
    for me, file in mods.items():
        code = code_of(file)
        paths = []
        for m in re.finditer(r"\buse\s+([^;]+);", code):
            paths += expand_use(m.group(1))
        code_without_uses = re.sub(r"\buse\s+[^;]+;", "", code)
        paths += PATH.findall(code_without_uses)
        for p in paths:
            segs = [s for s in p.split("::") if s and s != "*"]
            if not segs:
                continue
            if segs[0] == "crate":
                base, segs = (), segs[1:]
            elif segs[0] == "super":
                base = me
                while segs and segs[0] == "super":
                    base, segs = base[:-1], segs[1:]
            elif segs[0] == "self":
                base, segs = me, segs[1:]
            elif me + (segs[0],) in mods:
                base = me
            else:
                continue  # an external crate or std
            target = base
            for s in segs:
                if target + (s,) in mods:
                    target = target + (s,)
                else:
                    break
            if target != me:
                deps[me].add(target)
    return deps


def cycles(deps: dict) -> list[list]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in deps[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in deps:
        if v not in index:
            visit(v)
    return out


def name(m: tuple) -> str:
    return "::".join(m) or "crate"


def main():
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "src")
    mods = modules(src)
    deps = dependencies(mods)
    found = cycles(deps)
    for comp in found:
        members = set(comp)
        edges = [
            f"{name(a)} → {name(b)}" for a in comp for b in sorted(deps[a]) if b in members
        ]
        print(f"cycle: {', '.join(name(m) for m in comp)}\n  " + "\n  ".join(edges))
    if found:
        print(f"{len(found)} cycle(s) among {len(mods)} modules: data must flow one way")
        sys.exit(1)
    print(f"no module cycles among {len(mods)} modules")


if __name__ == "__main__":
    main()
