"""The README and docs/ pages stay true: every relative link resolves, and every command they
quote exists with the options they quote.

Why: the docs are spread over many pages now; a moved file, a renamed heading or a removed
option would otherwise leave a reader at a dead end. Commands are checked against the real
parsers (``engine.cli.build_parser``), tool scripts against their own source.
"""
from __future__ import annotations

import argparse
import re
from functools import lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
#: the package notes the pages link to: their links must hold too
NOTES = [*sorted(REPO.glob("engine/*/README.md")), REPO / "joyvasa_blender" / "README.md",
         REPO / "examples" / "README.md", REPO / "tests" / "fixtures" / "README.md"]

FENCE = re.compile(r"^(```|~~~)")
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
ENGINE_CMD = re.compile(r"(?:^|[\s`$(\"'])(?:python3?(?:\.\d+)?|\.venv/bin/python) -m engine ([A-Za-z<][\w|<>-]*)(.*)$")
SHORT_ENGINE_CMD = re.compile(r"^engine ([a-z]+)\b(.*)$")
TOOL_CMD = re.compile(r"(tools/[\w-]+\.py)\b(.*)$")
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


def split_page(text: str) -> tuple[list[str], list[str]]:
    """(prose lines, code-block lines): links count only in prose, commands in both."""
    prose, code, in_code = [], [], False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            in_code = not in_code
            continue
        (code if in_code else prose).append(line)
    return prose, code


def logical_lines(lines: list[str]) -> list[str]:
    """Join shell continuation lines (a trailing backslash) into one."""
    out: list[str] = []
    buf = ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        out.append(buf + line)
        buf = ""
    if buf:
        out.append(buf)
    return out


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"`|\*\*|\[|\]\([^)]*\)", "", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@lru_cache(maxsize=None)
def anchors(page: Path) -> frozenset[str]:
    prose, _ = split_page(page.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    out = set()
    for line in prose:
        m = re.match(r"^#{1,6}\s+(.*)$", line)
        if not m:
            continue
        slug = github_slug(m.group(1))
        n = seen.get(slug, 0)
        out.add(slug if n == 0 else f"{slug}-{n}")
        seen[slug] = n + 1
    return frozenset(out)


def links(page: Path) -> list[str]:
    prose, _ = split_page(page.read_text(encoding="utf-8"))
    text = "\n".join(INLINE_CODE.sub("", line) for line in prose)   # link text may wrap over lines
    return [m.group(1) for m in LINK.finditer(text)]


def quoted_commands(page: Path) -> list[str]:
    """Every command line a page quotes: code-block lines and inline code spans."""
    prose, code = split_page(page.read_text(encoding="utf-8"))
    spans = [m.group(2).strip() for line in prose for m in INLINE_CODE.finditer(line)]
    return logical_lines(code) + spans


def strip_comment(cmd: str) -> str:
    """Cut a shell comment and anything chained after the command."""
    cmd = re.split(r"\s#\s|\s#$|&&|;\s", cmd)[0]
    return cmd


@lru_cache(maxsize=1)
def engine_parsers() -> dict[str, argparse.ArgumentParser]:
    """Command name (and ``bench <target>``) -> its real argparse parser."""
    from engine.cli import COMMANDS, build_parser

    parser = build_parser(load_commands=list(COMMANDS))
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out: dict[str, argparse.ArgumentParser] = dict(sub.choices)
    bench_sub = [a for a in out["bench"]._actions if isinstance(a, argparse._SubParsersAction)]
    for target, p in (bench_sub[0].choices.items() if bench_sub else ()):
        out[f"bench {target}"] = p
    return out


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def engine_uses(page: Path) -> list[tuple[str, str, list[str]]]:
    """(quoted text, command, flags) for every engine command a page quotes."""
    uses = []
    for text in quoted_commands(page):
        m = ENGINE_CMD.search(text) or SHORT_ENGINE_CMD.match(text)
        if not m:
            continue
        name, rest = m.group(1), strip_comment(m.group(2))
        if name.startswith("<"):  # "python -m engine <command> --help": a placeholder
            continue
        if name == "bench":
            target = rest.split()[0] if rest.split() else ""
            for t in target.split("|"):
                uses.append((text, f"bench {t}" if t else "bench", FLAG.findall(rest)))
            continue
        uses.append((text, name, FLAG.findall(rest)))
    return uses


def test_pages_exist() -> None:
    names = {p.name for p in PAGES}
    assert {"README.md", "index.md", "engine-cli.md", "blender.md", "contract.md", "benchmarks.md"} <= names


@pytest.mark.parametrize("page", PAGES + NOTES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page: Path) -> None:
    bad = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            bad.append(f"{target}: {dest} does not exist")
            continue
        if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading '#{anchor}' in {dest.relative_to(REPO)} (has {sorted(anchors(dest))})")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("page", PAGES + NOTES, ids=lambda p: str(p.relative_to(REPO)))
def test_quoted_engine_commands_and_options_exist(page: Path) -> None:
    parsers = engine_parsers()
    bad = []
    for text, name, flags in engine_uses(page):
        if name not in parsers:
            bad.append(f"`{text}`: no engine command '{name}'")
            continue
        known = option_strings(parsers[name])
        bad += [f"`{text}`: '{name}' has no option {f}" for f in flags if f not in known]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("page", PAGES + NOTES, ids=lambda p: str(p.relative_to(REPO)))
def test_quoted_tool_scripts_and_options_exist(page: Path) -> None:
    """``tools/x.py --flag``: the script exists and defines that option (a literal in its source)."""
    bad = []
    for text in quoted_commands(page):
        for m in TOOL_CMD.finditer(text):
            script = REPO / m.group(1)
            if not script.is_file():
                bad.append(f"`{text}`: {m.group(1)} does not exist")
                continue
            source = script.read_text(encoding="utf-8")
            rest = strip_comment(m.group(2))
            rest = re.split(r"\s(?:python3?|blender|\.venv/bin/python)\s|\)", rest)[0]  # the next command
            bad += [f"`{text}`: {m.group(1)} defines no {f}" for f in FLAG.findall(rest)
                    if f'"{f}"' not in source and f"'{f}'" not in source]
    assert not bad, "\n".join(bad)


def test_the_checker_catches_a_bad_option(tmp_path: Path) -> None:
    """The command check is not vacuous: a made-up option and a made-up command are reported."""
    page = tmp_path / "p.md"
    page.write_text("```bash\npython -m engine motion --audio a.wav --no-such-flag\n```\n"
                    "Run `python -m engine frobnicate --x`.\n", encoding="utf-8")
    uses = engine_uses(page)
    assert ("motion" in [u[1] for u in uses]) and ("frobnicate" in [u[1] for u in uses])
    parsers = engine_parsers()
    motion_flags = next(u[2] for u in uses if u[1] == "motion")
    assert "--no-such-flag" in motion_flags and "--no-such-flag" not in option_strings(parsers["motion"])
    assert "--audio" in option_strings(parsers["motion"])
    assert "frobnicate" not in parsers


def test_the_checker_catches_a_dead_link(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Title here\n\n[x](b.md) [y](a.md#title-here) [z](a.md#nope) [wrapped\ntext](c.md)\n"
                                   "`[not](code.md)`\n```\n[not](block.md)\n```\n", encoding="utf-8")
    assert links(tmp_path / "a.md") == ["b.md", "a.md#title-here", "a.md#nope", "c.md"]
    assert anchors(tmp_path / "a.md") == frozenset({"title-here"})


def test_contract_page_follows_the_protocol() -> None:
    """docs/contract.md names the protocol version engine/contract/protocol.py speaks, has a row for every
    event type, and docs/errors.md one for every error code (a new event or code must be documented)."""
    from engine.contract import protocol

    contract = (REPO / "docs" / "contract.md").read_text(encoding="utf-8")
    assert f"protocol {protocol.PROTOCOL_MAJOR}.{protocol.PROTOCOL_MINOR} |" in contract
    missing = [e for e in protocol.EVENT_TYPES if f"| `{e}` |" not in contract]
    assert not missing, f"event types without a row in docs/contract.md: {missing}"
    errors = (REPO / "docs" / "errors.md").read_text(encoding="utf-8")
    missing = [c for c in protocol.ERROR_CODES if f"| `{c}` |" not in errors]
    assert not missing, f"error codes without a row in docs/errors.md: {missing}"


REPO_PATH = re.compile(r"^(?:engine|joyvasa_blender|tools|tests|examples|docs|\.ci)/[\w./-]*$")
SIBLING = re.compile(r"^[a-z_][a-z0-9_]*\.py$")


@pytest.mark.parametrize("page", PAGES + NOTES, ids=lambda p: str(p.relative_to(REPO)))
def test_quoted_repository_paths_exist(page: Path) -> None:
    """A file or folder of this repository named in inline code (`engine/jobs.py`) exists, and so
    does a module a package note names bare (`renderer.py` in engine/render/README.md): a moved or
    deleted module must not stay in the docs."""
    prose, _ = split_page(page.read_text(encoding="utf-8"))
    bad = []
    for line in prose:
        for m in INLINE_CODE.finditer(line):
            text = m.group(2).strip()
            if REPO_PATH.match(text) and not (REPO / text).exists():
                bad.append(text)
            elif page.parent.parent == REPO / "engine" and SIBLING.match(text) and not (page.parent / text).exists() \
                    and not (REPO / "engine" / text).exists():
                bad.append(text)  # a package note names its own modules (or engine-level ones) bare
    assert not bad, f"{page.relative_to(REPO)} names paths that do not exist: {sorted(set(bad))}"


def test_readme_set_up_commands_match_ci() -> None:
    """The README's two set-up commands are what CI does: the same torch pin as .ci/run, the same
    test command it runs last, and scripts that exist."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    _, code = split_page(readme)
    main_job = next(line for line in code if "tools/demo.py" in line and "venv" in line)
    tests = next(line for line in code if "-m pytest" in line)
    pin = re.search(r"torch==[\w.+]+", main_job)
    assert pin and pin.group(0) in ci, (main_job, "torch pin differs from .ci/run")
    test_command = tests.split("&&")[-1].strip()
    assert test_command == ".venv/bin/python -m pytest -n 2 --dist loadfile"   # two workers: CI has 2 cores
    assert [line.strip() for line in ci.splitlines() if line.strip()][-1] == test_command
    for script in re.findall(r"(tools/[\w-]+\.(?:py|sh))", main_job + tests):
        assert (REPO / script).is_file(), script
    extras = re.search(r"-e '?\.(\[[\w,]+\])", main_job)
    ci_extras = re.search(r'-e "?\.(\[[\w,]+\])', ci)
    assert extras and ci_extras and extras.group(1) == ci_extras.group(1), \
        (main_job, "installs other extras than .ci/run: README command 2 would skip tests CI runs")


#: a docs table row naming an error code: | `code` | situation | ...
CODE_ROW = re.compile(r"^\| `([a-z_]+)` \|", re.M)


def test_error_codes_named_in_the_docs_are_codes_the_engine_emits() -> None:
    """Every `code` the pages name in an error context is one of the engine's error or warning codes
    (a renamed or invented code in the docs is caught), and errors.md lists exactly the error codes."""
    from engine.contract.protocol import ERROR_CODES

    engine_src = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "engine").rglob("*.py"))
    page = (REPO / "docs" / "errors.md").read_text(encoding="utf-8")
    listed = set(CODE_ROW.findall(page))
    warnings = {c for c in listed if c not in ERROR_CODES}
    assert set(ERROR_CODES) <= listed, set(ERROR_CODES) - listed
    for code in warnings:   # a warning row: the engine must emit that warning code somewhere
        assert f'"{code}"' in engine_src, f"docs/errors.md lists {code!r}, which the engine never emits"
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        for line in text.splitlines():
            if not re.search(r"\b(error|code|warning|warns)\b", line, re.I):
                continue
            for code in re.findall(r"`([a-z]+_[a-z_]+)`", line):   # snake_case in an error/warning context
                assert code in ERROR_CODES or code in warnings or f'"{code}"' in engine_src, \
                    f"{doc.name} names {code!r} next to an error or warning, but the engine never emits it: {line}"


def test_a_missing_weights_folder_is_the_code_errors_md_gives(tmp_path: Path, capsys) -> None:
    """errors.md: a weights folder that is absent is ``weights_missing`` (fetch --verify-only included)."""
    import json as _json

    from engine.cli import main

    page = (REPO / "docs" / "errors.md").read_text(encoding="utf-8")
    assert "| `weights_missing` | the weights folder" in page
    capsys.readouterr()
    assert main(["fetch", "--verify-only", "--out", str(tmp_path / "none"), "--progress", "json"]) == 1
    events = [_json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]
    assert events[-1]["code"] == "weights_missing", events[-1]
