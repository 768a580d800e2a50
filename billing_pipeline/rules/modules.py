"""Which Lua files a rules file can reach, read before any rule code runs.

Lua never touches the file system: Python resolves ``require`` names here, refuses anything
outside ``lua/lib`` and ``lua/rules`` (``..``, absolute paths, symlinks that resolve
elsewhere), and hands the sources to the sandbox. ``require`` takes its module name as a
string literal, so the transitive closure found by scanning the sources is exactly what a
rules file can load, which makes the fingerprint exact.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from billing_pipeline.ratecards.model import RULES_FILE
from billing_pipeline.rules.model import RuleLoadError

MODULE_NAME = re.compile(r"^(lib|rules)\.([A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*)$")
_REQUIRE = re.compile(r"""\brequire\s*\(?\s*(?:"([^"\n]*)"|'([^'\n]*)'|\[\[([^\]\n]*)\]\])""")


@dataclass(frozen=True)
class Module:
    name: str
    chunkname: str  # "lib/util.lua": what error messages show
    source: bytes | None
    refused: str | None = None


def module_for_rules_file(rules_file: str) -> str:
    """``default.lua`` -> ``rules.default``; refuses paths and odd names."""
    if not RULES_FILE.match(rules_file):
        raise RuleLoadError(f"bad rules file name {rules_file!r}: expected NAME.lua in lua/rules/")
    return "rules." + rules_file[: -len(".lua")]


def resolve(lua_dir: Path, name: str) -> tuple[Path | None, str, str | None]:
    """The file of module ``name``: (path or None, chunkname, reason refused)."""
    match = MODULE_NAME.match(name)
    if not match:
        return None, name, "not lib.NAME or rules.NAME"
    area, rest = match.groups()
    relative = Path(area, *rest.split(".")).with_suffix(".lua")
    chunkname = relative.as_posix()
    root = lua_dir.resolve()
    candidate = lua_dir / relative
    if not candidate.exists():
        return None, chunkname, "no such file " + chunkname
    real = candidate.resolve()
    if not real.is_relative_to(root / area):
        return None, chunkname, f"{chunkname} resolves outside lua/{area}/"
    if not real.is_file():
        return None, chunkname, chunkname + " is not a file"
    return real, chunkname, None


def required_names(source: bytes) -> list[str]:
    text = source.decode("utf-8", errors="replace")
    return [next(g for g in m.groups() if g is not None) for m in _REQUIRE.finditer(text)]


def collect(lua_dir: Path, rules_file: str) -> dict[str, Module]:
    """The rules module and everything it requires, transitively, keyed by module name."""
    root_name = module_for_rules_file(rules_file)
    modules: dict[str, Module] = {}
    pending = [root_name]
    while pending:
        name = pending.pop()
        if name in modules:
            continue
        path, chunkname, refused = resolve(lua_dir, name)
        if path is None:
            if name == root_name:
                raise RuleLoadError(f"rules file {rules_file}: {refused}")
            modules[name] = Module(name, chunkname, None, refused)
            continue
        try:
            source = path.read_bytes()
        except OSError as exc:
            raise RuleLoadError(f"{chunkname}: cannot read: {exc.strerror}") from exc
        modules[name] = Module(name, chunkname, source)
        pending.extend(required_names(source))
    return modules


def fingerprint(modules: dict[str, Module]) -> str:
    digest = hashlib.sha256()
    for name in sorted(modules):
        module = modules[name]
        digest.update(name.encode() + b"\0")
        if module.source is None:
            digest.update(b"refused\0" + (module.refused or "").encode() + b"\0")
        else:
            digest.update(len(module.source).to_bytes(8, "big") + module.source)
    return digest.hexdigest()
