"""Build and test every distribution in packages/ in isolation.

Each test session gets a fresh virtualenv holding only the package under test, the sibling
packages it depends on (installed from this tree) and its test extras. Torch is pinned through
constraints/test.txt: an unpinned torch pulls several GB of CUDA wheels.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PACKAGES = ROOT / "packages"
CONSTRAINTS = ("-c", str(ROOT / "constraints" / "test.txt"))
DISTRIBUTIONS = ("core", "torch", "hf", "onnx", "bnb", "packed", "awq", "gptq", "peft", "compressed", "gguf")

nox.options.default_venv_backend = "venv"  # pip sees the local torch wheel; uv does not
nox.options.error_on_missing_interpreters = True

TEST_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def package(name: str, extras: str = "") -> str:
    path = PACKAGES / f"invarlock-{name}"
    return f"{path}[{extras}]" if extras else str(path)


def install(session: nox.Session, *requirements: str) -> None:
    session.install(*CONSTRAINTS, *requirements)


def pytest(session: nox.Session, *paths: str) -> None:
    # certify's baseline cache goes to the session's own directory, never the user's cache
    cache = Path(session.create_tmp()) / "invarlock-cache"
    shutil.rmtree(cache, ignore_errors=True)
    session.run("pytest", *paths, *session.posargs, env={**TEST_ENV, "INVARLOCK_CACHE_DIR": str(cache)})


@nox.session
def core(session: nox.Session) -> None:
    """invarlock-core alone: no torch in this venv, so the no-torch-at-import checks mean something."""
    install(session, package("core", "test"))
    pytest(session, "packages/invarlock-core/tests")


@nox.session
def torch(session: nox.Session) -> None:
    """invarlock-torch, the snapshot engine, on plain PyTorch models: no transformers in this venv."""
    install(session, package("core", "testing"), package("torch", "test"))
    pytest(session, "packages/invarlock-torch/tests")


@nox.session
@nox.parametrize("transformers", ["5", "4.57"])
def hf(session: nox.Session, transformers: str) -> None:
    """invarlock-hf on transformers 5.x and on 4.57.x (the ONNX stack needs 4.57)."""
    pin = "transformers>=5,<6" if transformers == "5" else "transformers>=4.57,<4.58"
    install(session, package("core", "testing"), package("torch"), package("hf", "test"), pin)
    pytest(session, "packages/invarlock-hf/tests")


@nox.session
def onnx(session: nox.Session) -> None:
    """invarlock-onnx: optimum-onnx pins transformers<4.58."""
    install(session, package("core", "testing"), package("torch"), package("hf"), package("onnx", "test"))
    pytest(session, "packages/invarlock-onnx/tests")


@nox.session
def bnb(session: nox.Session) -> None:
    """invarlock-bnb on bitsandbytes' CPU backend (8-bit and 4-bit); tests marked gpu skip without CUDA."""
    install(session, package("core", "testing"), package("torch"), package("hf"), package("bnb", "test"))
    pytest(session, "packages/invarlock-bnb/tests")


def gptqmodel_env(session: nox.Session) -> dict[str, str]:
    """gptqmodel settings for the gptq and awq sessions: its CPU worker pool refuses to start on 2
    cores without an explicit count, and its JIT-built CPU extension and torch.compile's kernels are
    cached in nox's shared cache, so they are built once for both sessions."""
    cache = session.cache_dir
    return {
        "GPTQMODEL_CPU_WORKERS": "2",
        "GPTQMODEL_CACHE_DIR": str(cache / "gptqmodel"),
        "GPTQMODEL_TORCH_EXTENSIONS_DIR": str(cache / "gptqmodel-torch-extensions"),
        "TORCHINDUCTOR_CACHE_DIR": str(cache / "torchinductor"),
    }


@nox.session
def gptq(session: nox.Session) -> None:
    """invarlock-gptq, and the tests of invarlock-packed (the library it shares with invarlock-awq):
    gptqmodel quantizes tiny models on CPU in the session; gpu tests skip without CUDA."""
    session.env.update(gptqmodel_env(session))
    install(
        session,
        package("core", "testing"),
        package("torch"),
        package("hf"),
        package("packed", "test"),
        package("gptq", "test"),
    )
    pytest(session, "packages/invarlock-packed/tests", "packages/invarlock-gptq/tests")


@nox.session
def awq(session: nox.Session) -> None:
    """invarlock-awq, built on invarlock-packed; invarlock-gptq is not installed (awq must not need it)."""
    session.env.update(gptqmodel_env(session))
    install(
        session,
        package("core", "testing"),
        package("torch"),
        package("hf"),
        package("packed"),
        package("awq", "test"),
    )
    pytest(session, "packages/invarlock-awq/tests")


@nox.session
def peft(session: nox.Session) -> None:
    """invarlock-peft on transformers 5, with invarlock-bnb for the QLoRA (4-bit base) tests."""
    install(
        session,
        package("core", "testing"),
        package("torch"),
        package("hf"),
        package("bnb"),
        package("peft", "test"),
        "transformers>=5,<6",
    )
    pytest(session, "packages/invarlock-peft/tests")


@nox.session
def compressed(session: nox.Session) -> None:
    """invarlock-compressed: compressed-tensors 0.20 needs transformers 5; fixtures made on the CPU."""
    install(
        session,
        package("core", "testing"),
        package("torch"),
        package("hf"),
        package("compressed", "test"),
        "transformers>=5,<6",
    )
    pytest(session, "packages/invarlock-compressed/tests")


@nox.session
def gguf(session: nox.Session) -> None:
    """invarlock-gguf: GGUF files written in the session, scored by llama.cpp.

    llama-cpp-python is an sdist: the first run compiles llama.cpp from the package index (CPU
    build: about 9 minutes on 2 idle cores, over an hour niced on a loaded machine). pip keeps the
    wheel it built in its cache (~/.cache/pip/wheels), so later runs and fresh session venvs on
    the same machine install it in seconds; CI keeps pip's cache directory between runs.
    """
    install(
        session,
        package("core", "testing"),
        package("torch"),
        package("hf"),
        package("gguf", "test"),
        "transformers>=5,<6",
    )
    pytest(session, "packages/invarlock-gguf/tests")


@nox.session
def integration(session: nox.Session) -> None:
    """Cross-package tests: third-party sample plugins next to invarlock-core and invarlock-hf."""
    install(
        session,
        package("core", "test"),
        package("torch"),
        package("hf"),
        "-r",
        "tests-integration/requirements.txt",
    )
    pytest(session, "tests-integration")


BROWSER_PACKAGES = ("chromium", "poppler-utils")
"""Debian packages the browser session needs: headless Chromium, and pdftoppm/pdftotext."""


@nox.session
def browser(session: nox.Session) -> None:
    """The HTML certificate in headless Chromium: print contrast, 400 px layout, no fetches.

    Installs Debian's chromium and poppler-utils with apt-get when they are missing and this runs
    as root; elsewhere the tests skip with the reason, unless INVARLOCK_REQUIRE_BROWSER=1 (CI).
    """
    missing = shutil.which("chromium") is None or shutil.which("pdftoppm") is None
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        session.run("apt-get", "update", "-qq", external=True, env=env)
        session.run("apt-get", "install", "-y", "-qq", *BROWSER_PACKAGES, external=True, env=env)
    install(session, package("core", "test"))
    pytest(session, "packages/invarlock-core/tests-browser")


@nox.session
def build(session: nox.Session) -> None:
    """Build sdist and wheel of every distribution, check metadata, install each wheel alone."""
    unlisted = sorted(
        {p.name for p in PACKAGES.iterdir() if p.is_dir()} - {f"invarlock-{d}" for d in DISTRIBUTIONS}
    )
    if unlisted:
        session.error(f"packages/ holds {unlisted}, which DISTRIBUTIONS in noxfile.py does not list")
    install(session, "build", "twine", "packaging")
    dist = ROOT / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    for name in DISTRIBUTIONS:
        session.run("python", "-m", "build", "--outdir", str(dist), str(PACKAGES / f"invarlock-{name}"))
    session.run("python", "-m", "build", "--outdir", str(dist), str(ROOT))
    session.run("twine", "check", "--strict", *map(str, sorted(dist.iterdir())))
    session.run("python", str(ROOT / "tools" / "check_wheels.py"), str(dist))


LINTED = ("packages", "tests-integration", "noxfile.py", "tools", "bench")


@nox.session
def lint(session: nox.Session) -> None:
    install(session, "ruff")
    session.run("ruff", "check", *LINTED)
    session.run("ruff", "format", "--check", *LINTED)


SOURCES = tuple(str(path) for path in sorted(PACKAGES.glob("invarlock-*/src/*")) if path.is_dir())
"""Every import package of every distribution in packages/."""


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict (configured in pyproject.toml) on every package and the build tools.

    torch, transformers, bitsandbytes, peft, compressed-tensors and gguf are installed so the code
    that uses them is checked against their types; the backends that cannot share one environment
    with them or take minutes to build (optimum-onnx, gptqmodel, llama-cpp-python) read as Any.
    """
    install(
        session,
        "mypy",
        package("core", "test"),
        package("torch"),
        package("hf"),
        package("bnb"),
        package("peft"),
        package("compressed"),
        "gguf>=0.19",
        "transformers>=5,<6",
    )
    session.run("mypy", *SOURCES, "tools")


LOWEST = ("core", "torch", "hf", "bnb")
"""The distributions the lowest session installs at their dependencies' lower bounds."""


@nox.session
def lowest(session: nox.Session) -> None:
    """core, torch, hf and bnb with every runtime dependency at its declared lower bound.

    tools/lowest_constraints.py turns the pyproject lower bounds into pins (in place of
    constraints/test.txt). torch stays at constraints/test.txt's 2.13.0, the only torch that
    installs here without several GB of CUDA: the declared torch lower bounds are not tested.
    """
    session.install("packaging")
    pins = Path(session.create_tmp()) / "lowest-constraints.txt"
    session.run("python", str(ROOT / "tools" / "lowest_constraints.py"), str(pins), *LOWEST)
    session.install("-c", str(pins), *(package(name, "test") for name in LOWEST))
    for name in LOWEST:
        # The describe sweep (minutes: it builds every model type transformers has) runs in both hf
        # sessions; here the rest of the hf suite is what tests the lower bounds.
        ignore = ["--ignore=packages/invarlock-hf/tests/test_describe_sweep.py"] if name == "hf" else []
        pytest(session, f"packages/invarlock-{name}/tests", *ignore)
