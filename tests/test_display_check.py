"""Before Qt aborts with "could not load the Qt platform plugin", the window
says in one line which libraries this system lacks and how to install them.

The check reads the real X11 plugin of the installed PySide6; a missing
library is simulated (a system folder without it, a copy of the plugin that
needs a library nobody has), nothing is removed from the system.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from localchat.ui import display_check
from localchat.ui.display_check import (
    LibrarySearch,
    elf_dynamic,
    install_hint,
    message,
    missing_libraries,
    platforms,
    unresolved_libraries,
)

ROOT = Path(__file__).resolve().parents[1]
QT = display_check.qt_folder()
PLUGIN = Path(QT, "plugins", "platforms", "libqxcb.so") if QT else Path("/nonexistent")
XCB_QPA = Path(QT, "lib", "libQt6XcbQpa.so.6") if QT else Path("/nonexistent")
pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Qt's X11 plugin is Linux's"),
    pytest.mark.skipif(not PLUGIN.is_file(), reason="needs PySide6's X11 plugin"),
]
LACKING = ["libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libxkbcommon-x11.so.0"]


def apt(name: str) -> str | None:
    return f"/usr/bin/{name}" if name in ("apt", "apt-get") else None


def dnf(name: str) -> str | None:
    return "/usr/bin/dnf" if name == "dnf" else None


def system_without(tmp_path: Path, lacking: list[str]) -> Path:
    """A system library folder with everything the plugin links but ``lacking``."""
    nowhere = LibrarySearch(cache=b"", default_dirs=[])
    everything = unresolved_libraries(str(PLUGIN), nowhere)
    assert set(lacking) <= set(everything)
    system = tmp_path / "lib"
    system.mkdir(parents=True)
    for soname in everything:
        if soname not in lacking:
            (system / soname).touch()
    return system


def test_it_names_the_missing_libraries_and_the_command_that_installs_them(
    tmp_path: Path,
) -> None:
    search = LibrarySearch(cache=b"", default_dirs=[str(system_without(tmp_path, LACKING))])
    assert sorted(unresolved_libraries(str(PLUGIN), search)) == LACKING
    missing = missing_libraries([str(PLUGIN)], search, loads=lambda _: False)
    assert missing == LACKING
    assert message(missing, install_hint(missing, which=apt, root=False)) == (
        "localchat: the window cannot open: this system lacks libxcb-icccm.so.4, "
        "libxcb-keysyms.so.1, libxkbcommon-x11.so.0, which Qt needs to show windows on X11 "
        "(the localchat commands, such as `localchat chat`, work without them); "
        "install them with: sudo apt install libxcb-icccm4 libxcb-keysyms1 libxkbcommon-x11-0"
    )


def test_a_library_counts_wherever_the_loader_would_find_it(tmp_path: Path) -> None:
    system = system_without(tmp_path, LACKING)
    extra = tmp_path / "extra"  # LD_LIBRARY_PATH
    extra.mkdir()
    (extra / "libxcb-keysyms.so.1").touch()
    cache = b"glibc-ld.so.cache1.1\0/usr/lib/x86_64-linux-gnu/libxkbcommon-x11.so.0\0"
    search = LibrarySearch([str(extra)], cache=cache, default_dirs=[str(system)])
    assert unresolved_libraries(str(PLUGIN), search) == ["libxcb-icccm.so.4"]
    # The plugin finds Qt's own libraries next to it (RUNPATH $ORIGIN/../../lib)
    # and the check follows them: libQt6XcbQpa needs libglib-2.0.
    needed, folders = elf_dynamic(str(PLUGIN))
    assert "libQt6XcbQpa.so.6" in needed and str(XCB_QPA.parent) in map(os.path.normpath, folders)
    glib = LibrarySearch(cache=b"", default_dirs=[str(system_without(tmp_path / "g", []))])
    (tmp_path / "g" / "lib" / "libglib-2.0.so.0").unlink()
    assert unresolved_libraries(str(PLUGIN), glib) == ["libglib-2.0.so.0"]


def test_the_loader_has_the_last_word(tmp_path: Path) -> None:
    """A library the files do not show but the loader opens never stops a
    window that would open."""
    search = LibrarySearch(cache=b"", default_dirs=[str(system_without(tmp_path, LACKING))])
    plugin = str(PLUGIN)
    assert missing_libraries([plugin], search, loads=lambda name: name == plugin) == []
    opens = {"libxcb-keysyms.so.1"}
    assert missing_libraries([plugin], search, loads=opens.__contains__) == [
        "libxcb-icccm.so.4",
        "libxkbcommon-x11.so.0",
    ]
    # Qt tries each copy of the plugin it finds: one that loads is enough.
    full = LibrarySearch(cache=b"", default_dirs=[str(system_without(tmp_path / "f", []))])
    assert missing_libraries([plugin], full, loads=lambda _: False) == []


def test_the_install_command_fits_the_system() -> None:
    missing = ["libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-shape.so.0", "libxcb-xkb.so.1"]
    assert install_hint(missing, which=apt, root=True) == (
        "install them with: apt install libxcb-cursor0 libxcb-icccm4 libxcb-shape0 libxcb-xkb1"
    )
    assert install_hint(missing, which=dnf, root=False) == (
        "install them with: sudo dnf install xcb-util-cursor xcb-util-wm libxcb"
    )
    assert install_hint(missing, which=lambda _: None, root=False) == (
        "install the packages that provide them with your package manager"
    )
    assert install_hint(["libxcb-cursor.so.9", "libxcb-icccm.so.4"], which=apt, root=False) == (
        "install the package that provides libxcb-cursor.so.9 and run: "
        "sudo apt install libxcb-icccm4"
    )
    # Libraries no table knows are named, whatever else is missing.
    assert install_hint(["libfoo.so.1"], which=apt, root=False) == (
        "install the package that provides libfoo.so.1"
    )
    assert install_hint(["libfoo.so.1", "libbar.so.2"], which=apt, root=False) == (
        "install the packages that provide libfoo.so.1, libbar.so.2"
    )


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"DISPLAY": ":0"}, ["xcb"]),
        ({}, ["xcb"]),
        ({"DISPLAY": ":0", "XDG_SESSION_TYPE": "wayland"}, ["wayland", "xcb"]),
        ({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"}, ["wayland", "xcb"]),
        ({"DISPLAY": ":0", "XDG_SESSION_TYPE": "x11"}, ["xcb"]),
        ({"QT_QPA_PLATFORM": "offscreen", "DISPLAY": ":0"}, ["offscreen"]),
        ({"QT_QPA_PLATFORM": "xcb", "WAYLAND_DISPLAY": "wayland-0"}, ["xcb"]),
        ({"QT_QPA_PLATFORM": "wayland;xcb"}, ["wayland", "xcb"]),
        ({"QT_QPA_PLATFORM": "xcb:nograb"}, ["xcb"]),
    ],
)
def test_the_platforms_qt_tries(environ: dict[str, str], expected: list[str]) -> None:
    assert platforms(environ) == expected


def test_only_a_window_that_needs_x11_is_checked(tmp_path: Path) -> None:
    # A copy of the plugin that needs a library nobody has: X11 alone would fail.
    broken = tmp_path / "plugins" / "platforms"
    broken.mkdir(parents=True)
    data = PLUGIN.read_bytes().replace(b"libxcb-cursor.so.0\0", b"libxcb-cursor.so.9\0")
    (broken / "libqxcb.so").write_bytes(data)
    (tmp_path / "lib").symlink_to(XCB_QPA.parent)  # its RUNPATH: $ORIGIN/../../lib
    x11 = {"DISPLAY": ":99", "QT_QPA_PLATFORM_PLUGIN_PATH": str(broken)}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(display_check, "qt_folder", lambda: None)  # that copy alone
        line = display_check.check(x11)
        assert line is not None and "libxcb-cursor.so.9" in line
        for elsewhere in (
            {**x11, "QT_QPA_PLATFORM": "offscreen"},
            {**x11, "WAYLAND_DISPLAY": "wayland-0"},
            {**x11, "XDG_SESSION_TYPE": "wayland"},
            {**x11, "QT_QPA_PLATFORM": "wayland;xcb"},
        ):
            assert display_check.check(elsewhere) is None, elsewhere
    # Qt falls back from that copy to PySide6's own: the line comes only where
    # that one cannot load either (as on a fresh Debian 12).
    if shutil.which("ldd"):
        assert (display_check.check(x11) is None) == (not not_found(PLUGIN))


def test_a_plugin_it_cannot_read_leaves_the_window_to_qt(tmp_path: Path) -> None:
    """No traceback from the check, whatever it finds."""
    platforms_dir = tmp_path / "plugins" / "platforms"
    platforms_dir.mkdir(parents=True)
    head = PLUGIN.read_bytes()[:200]
    for content in (b"", b"not an ELF file", head, b"\x7fELF" + bytes(60)):
        (platforms_dir / "libqxcb.so").write_bytes(content)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(display_check, "qt_folder", lambda: str(tmp_path))
            assert display_check.check({"DISPLAY": ":99"}) is None
    with pytest.raises(ValueError):
        elf_dynamic(str(platforms_dir / "libqxcb.so"))


@pytest.mark.skipif(shutil.which("readelf") is None, reason="needs readelf (binutils)")
def test_it_reads_what_readelf_reads() -> None:
    for library in (PLUGIN, XCB_QPA):
        out = subprocess.run(
            ["readelf", "-d", str(library)], capture_output=True, text=True, check=True
        ).stdout
        needed, folders = elf_dynamic(str(library))
        assert needed == re.findall(r"\(NEEDED\)\s+Shared library: \[(.+)\]", out)
        runpath = re.findall(r"\((?:RUNPATH|RPATH)\)\s+Library (?:run)?path: \[(.+)\]", out)
        origin = str(library.parent)
        assert folders == [p.replace("$ORIGIN", origin) for p in runpath[0].split(":")]


def not_found(library: Path) -> set[str]:
    out = subprocess.run(["ldd", str(library)], capture_output=True, text=True).stdout
    return set(re.findall(r"^\s*(\S+) => not found", out, re.MULTILINE))


def listed(line: str) -> set[str]:
    m = re.search(r"this system lacks (.+?), which Qt needs", line)
    assert m, line
    return set(m[1].split(", "))


def x11_env(**extra: str) -> dict[str, str]:
    """An X11 session (on a display that is not there), not offscreen."""
    keep = ("PATH", "HOME", "LANG", "LOCALCHAT_HOME", "HF_HUB_CACHE", "LOCALCHAT_DEMO_MODEL")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    return {**env, "DISPLAY": ":99", "XDG_SESSION_TYPE": "x11", **extra}


@pytest.mark.skipif(shutil.which("ldd") is None, reason="ldd is the referee")
def test_on_this_machine_it_agrees_with_the_loader() -> None:
    """What ldd says the real plugin lacks here, the check says (nothing where
    nothing is missing)."""
    lacking = not_found(PLUGIN)
    line = display_check.check(x11_env())
    if not lacking:
        assert line is None
    else:
        assert line is not None and listed(line) == lacking


def test_where_nothing_is_missing_it_loads_neither_ctypes_nor_a_subprocess(
    tmp_path: Path,
) -> None:
    """The check runs at every start of the window: files only, no loader."""
    here = LibrarySearch()
    nowhere = LibrarySearch(cache=b"", default_dirs=[])
    for soname in unresolved_libraries(str(PLUGIN), nowhere):
        if not here.on_system(soname):  # what this machine lacks, on LD_LIBRARY_PATH
            (tmp_path / soname).touch()
    probe = (
        "import sys\n"
        "from localchat.ui.display_check import check\n"
        "assert check() is None\n"
        "heavy = ('ctypes', 'subprocess', 'shutil', 'multiprocessing', 'PySide6')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        env=x11_env(LD_LIBRARY_PATH=str(tmp_path), PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert out.strip() == "[]"


def mirror(src: Path, dst: Path, keep: str) -> None:
    dst.mkdir(parents=True)
    for entry in src.iterdir():
        if entry.name != keep:
            (dst / entry.name).symlink_to(entry)


@pytest.mark.skipif(shutil.which("ldd") is None, reason="ldd is the referee")
def test_the_window_says_what_is_missing_where_qt_would_abort(tmp_path: Path) -> None:
    """PySide6 as installed, but its X11 plugin needs a library this system
    lacks: Qt alone aborts with "Could not load the Qt platform plugin";
    ``localchat`` says in one line what is missing and exits with status 1."""
    assert QT is not None
    real = Path(QT).parent
    site = tmp_path / "site"
    mirror(real, site / "PySide6", "Qt")
    mirror(real / "Qt", site / "PySide6" / "Qt", "plugins")
    mirror(real / "Qt" / "plugins", site / "PySide6" / "Qt" / "plugins", "platforms")
    platforms_dir = site / "PySide6" / "Qt" / "plugins" / "platforms"
    mirror(real / "Qt" / "plugins" / "platforms", platforms_dir, "libqxcb.so")
    data = PLUGIN.read_bytes()
    assert data.count(b"libxcb-cursor.so.0\0") == 1
    (platforms_dir / "libqxcb.so").write_bytes(
        data.replace(b"libxcb-cursor.so.0\0", b"libxcb-cursor.so.9\0")
    )
    lacking = not_found(platforms_dir / "libqxcb.so")
    assert "libxcb-cursor.so.9" in lacking
    env = x11_env(PYTHONPATH=str(site))

    qt_alone = subprocess.run(
        [sys.executable, "-c", "from PySide6.QtWidgets import QApplication; QApplication([])"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert qt_alone.returncode != 0
    assert "Could not load the Qt platform plugin" in qt_alone.stderr

    ours = subprocess.run(
        [sys.executable, "-m", "localchat"],
        env={**env, "PYTHONPATH": f"{site}{os.pathsep}{ROOT}"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert ours.returncode == 1
    assert ours.stdout == ""
    lines = ours.stderr.splitlines()
    assert len(lines) == 1, ours.stderr
    assert lines[0].startswith("localchat: the window cannot open: this system lacks ")
    assert listed(lines[0]) == lacking
    assert "install the package that provides libxcb-cursor.so.9" in lines[0]
    assert "qt.qpa" not in ours.stderr and "Traceback" not in ours.stderr


def test_the_readme_names_every_x11_library_the_plugin_links() -> None:
    readme = (ROOT / "README.md").read_text()
    apt_line = re.search(r"`sudo apt install ([^`]+)`", readme)
    dnf_line = re.search(r"`sudo dnf install ([^`]+)`", readme)
    assert apt_line and dnf_line
    x11 = {
        soname
        for library in (PLUGIN, XCB_QPA)
        for soname in elf_dynamic(str(library))[0]
        if soname.startswith(("libxcb", "libxkbcommon", "libX11-xcb"))
    }
    assert "libxcb-icccm.so.4" in x11 and "libxcb-keysyms.so.1" in x11
    assert {display_check.DEBIAN_PACKAGES[s] for s in x11} <= set(apt_line[1].split())
    assert {display_check.FEDORA_PACKAGES[s] for s in x11} <= set(dnf_line[1].split())
