"""Issue 21's size rule, kept true: no product file over 500 lines and no function over 80 (Python by its AST,
C by its top-level braces). A longer one fails here with its file and name; split it before it grows."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("qrng", "transparency", "qrngd", "qrng_pkcs11", "ceremony", "qrng_cli")
MAX_FILE, MAX_FUNCTION = 500, 80


def _python_files() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _c_files() -> list[Path]:
    return sorted((ROOT / "csrc").rglob("*.[ch]"))


def c_functions(text: str) -> list[tuple[str, int]]:
    """(name, lines) of each function definition in C source: a top-level brace whose head (the text since the
    previous top-level `;`, `}` or preprocessor line) ends in a parameter list and has no `=`. Comments, strings
    and character literals are blanked first, keeping the line breaks."""
    text = re.sub(r"/\*.*?\*/|//[^\n]*|\"(\\.|[^\"\\\n])*\"|'(\\.|[^'\\\n])*'",
                  lambda m: re.sub(r"[^\n]", " ", m.group(0)), text, flags=re.S)
    text = re.sub(r"(?m)^[ \t]*#.*(\\\n.*)*$", lambda m: re.sub(r"[^\n]", ";", m.group(0)), text)
    out, depth, head_at, start = [], 0, 0, 0
    for i, ch in enumerate(text):
        if ch == "{":
            if depth == 0:
                head = text[head_at:i]
                name = re.search(r"(\w+)\s*\([^()]*(\([^()]*\)[^()]*)*\)\s*$", head)
                start = (head_at + len(head) - len(head.lstrip())) if name and "=" not in head else -1
                fname = name.group(1) if name else ""
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                if start >= 0:
                    out.append((fname, text.count("\n", start, i) + 1))
                head_at = i + 1
        elif ch == ";" and depth == 0:
            head_at = i + 1
    return out


def test_no_product_file_is_over_500_lines():
    files = _python_files() + _c_files()
    assert len(files) > 150  # the product is where this test looks
    long = [f"{p.relative_to(ROOT)} ({n} lines)" for p in files if (n := p.read_text().count("\n")) > MAX_FILE]
    assert not long, f"files over {MAX_FILE} lines (split them): {long}"


def test_no_python_function_is_over_80_lines():
    long = [f"{p.relative_to(ROOT)}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)"
            for p in _python_files() for n in ast.walk(ast.parse(p.read_text()))
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.end_lineno is not None
            and n.end_lineno - n.lineno + 1 > MAX_FUNCTION]
    assert not long, f"functions over {MAX_FUNCTION} lines: {long}"


def test_no_c_function_is_over_80_lines():
    found = {p: c_functions(p.read_text()) for p in _c_files()}
    assert sum(len(f) for f in found.values()) > 100  # the scan sees the functions at all
    long = [f"{p.relative_to(ROOT)} {name} ({n} lines)" for p, fs in found.items() for name, n in fs
            if n > MAX_FUNCTION]
    assert not long, f"functions over {MAX_FUNCTION} lines: {long}"


@pytest.mark.parametrize(("source", "expected"), [
    ("int f(void) {\n  return 0;\n}\n", [("f", 3)]),
    ("static int\ng(int a,\n  int b)\n{\n  if (a) { return b; }\n  return 0;\n}\n", [("g", 7)]),
    ("struct s { int a; };\nstatic const int t[] = { 1, 2 };\nint h(void) { return '}'; }\n", [("h", 1)]),
    ('#define X(a) { a }\n/* } { */\nconst char *k(void) {\n  return "}{";\n}\n', [("k", 3)]),
    ("typedef int (*fn)(int);\nstatic void each(void (*fn)(int), int n) {\n  fn(n);\n}\n", [("each", 3)]),
    ("QRNG_EXPORT CK_RV C_GetInfo(CK_INFO_PTR p) { CALL(\"C_GetInfo\", get_info(p)); }\n", [("C_GetInfo", 1)]),
])
def test_the_c_scan_finds_each_function_and_its_length(source, expected):
    assert c_functions(source) == expected
