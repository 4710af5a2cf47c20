"""Before Qt starts: can its X11 platform plugin load on this system?

Qt's xcb plugin (``libqxcb.so``) links a dozen X libraries that a fresh Linux
install often lacks (``libxcb-icccm4``, ``libxcb-keysyms1``...). Without them
Qt aborts with "could not load the Qt platform plugin" and says nothing of
which libraries are missing. :func:`check` finds out first and returns one line
that names them and the command that installs them.

It runs at every start of the window, so it reads the ELF headers itself (no
subprocess, no ctypes): a few kilobytes from the plugin and the Qt libraries it
links, and the loader's cache. Only when a library seems missing does it ask
the dynamic loader (ctypes) to confirm, so a wrong guess never stops a window
that would open. This module must not import PySide6: it runs before Qt loads.
"""

from __future__ import annotations

import os
import struct
import sys
from collections.abc import Callable, Iterable, Mapping

# The libraries Qt's X11 plugin and the Qt libraries under it link, by soname,
# and the packages that provide them. Older Qt releases also linked
# libxcb-xinerama and libxcb-xinput.
DEBIAN_PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-xinput.so.0": "libxcb-xinput0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-glx.so.0": "libxcb-glx0",
    "libxcb.so.1": "libxcb1",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libX11.so.6": "libx11-6",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libOpenGL.so.0": "libopengl0",
    "libGLX.so.0": "libglx0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libdbus-1.so.3": "libdbus-1-3",
}
FEDORA_PACKAGES = {
    "libxcb-cursor.so.0": "xcb-util-cursor",
    "libxcb-icccm.so.4": "xcb-util-wm",
    "libxcb-keysyms.so.1": "xcb-util-keysyms",
    "libxcb-image.so.0": "xcb-util-image",
    "libxcb-render-util.so.0": "xcb-util-renderutil",
    "libxcb-util.so.1": "xcb-util",
    "libxcb-xinerama.so.0": "libxcb",
    "libxcb-xinput.so.0": "libxcb",
    "libxcb-shape.so.0": "libxcb",
    "libxcb-randr.so.0": "libxcb",
    "libxcb-xkb.so.1": "libxcb",
    "libxcb-xfixes.so.0": "libxcb",
    "libxcb-sync.so.1": "libxcb",
    "libxcb-shm.so.0": "libxcb",
    "libxcb-render.so.0": "libxcb",
    "libxcb-glx.so.0": "libxcb",
    "libxcb.so.1": "libxcb",
    "libxkbcommon.so.0": "libxkbcommon",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11",
    "libX11.so.6": "libX11",
    "libX11-xcb.so.1": "libX11-xcb",
    "libGL.so.1": "libglvnd-glx",
    "libEGL.so.1": "libglvnd-egl",
    "libOpenGL.so.0": "libglvnd-opengl",
    "libGLX.so.0": "libglvnd-glx",
    "libfontconfig.so.1": "fontconfig",
    "libfreetype.so.6": "freetype",
    "libglib-2.0.so.0": "glib2",
    "libgthread-2.0.so.0": "glib2",
    "libdbus-1.so.3": "dbus-libs",
}

LD_SO_CACHE = "/etc/ld.so.cache"
_MULTIARCH = getattr(sys.implementation, "_multiarch", "")
# The loader's own directories, after LD_LIBRARY_PATH, RUNPATH and the cache.
DEFAULT_DIRS = tuple(
    d
    for d in (
        f"/lib/{_MULTIARCH}" if _MULTIARCH else "",
        f"/usr/lib/{_MULTIARCH}" if _MULTIARCH else "",
        "/lib64",
        "/usr/lib64",
        "/lib",
        "/usr/lib",
    )
    if d
)

_PT_LOAD, _PT_DYNAMIC = 1, 2
_DT_NULL, _DT_NEEDED, _DT_STRTAB, _DT_RPATH, _DT_RUNPATH = 0, 1, 5, 15, 29


def elf_dynamic(path: str) -> tuple[list[str], list[str]]:
    """The sonames an ELF shared object needs (DT_NEEDED) and the folders its
    DT_RUNPATH / DT_RPATH add to the search, ``$ORIGIN`` expanded. Raises
    ValueError for a file that is not one, OSError when it cannot be read."""
    with open(path, "rb") as f:
        head = f.read(64)
        if len(head) < 52 or head[:4] != b"\x7fELF":
            raise ValueError(f"{path} is not an ELF file")
        order = {1: "<", 2: ">"}.get(head[5])
        if order is None or head[4] not in (1, 2):
            raise ValueError(f"{path}: unknown ELF class or byte order")
        wide = head[4] == 2
        if wide:
            (phoff,) = struct.unpack_from(order + "Q", head, 32)
            phentsize, phnum = struct.unpack_from(order + "HH", head, 54)
            header, entry = struct.Struct(order + "IIQQQQQQ"), struct.Struct(order + "qQ")
        else:
            (phoff,) = struct.unpack_from(order + "I", head, 28)
            phentsize, phnum = struct.unpack_from(order + "HH", head, 42)
            header, entry = struct.Struct(order + "IIIIIIII"), struct.Struct(order + "iI")
        if phentsize < header.size or phnum > 4096:
            raise ValueError(f"{path}: bad program headers")
        f.seek(phoff)
        table = f.read(phentsize * phnum)
        if len(table) < phentsize * phnum:
            raise ValueError(f"{path}: truncated")
        loads: list[tuple[int, int, int]] = []  # (vaddr, offset, size)
        dynamic = None
        for i in range(phnum):
            fields = header.unpack_from(table, i * phentsize)
            if wide:
                kind, _flags, offset, vaddr, _paddr, filesz = fields[:6]
            else:
                kind, offset, vaddr, _paddr, filesz = fields[:5]
            if kind == _PT_LOAD:
                loads.append((vaddr, offset, filesz))
            elif kind == _PT_DYNAMIC:
                dynamic = (offset, filesz)
        if dynamic is None:
            return [], []
        f.seek(dynamic[0])
        raw = f.read(min(dynamic[1], 1 << 20))
        needed: list[int] = []
        paths: dict[int, int] = {}
        strtab = None
        for at in range(0, len(raw) - entry.size + 1, entry.size):
            tag, value = entry.unpack_from(raw, at)
            if tag == _DT_NULL:
                break
            if tag == _DT_NEEDED:
                needed.append(value)
            elif tag == _DT_STRTAB:
                strtab = value
            elif tag in (_DT_RPATH, _DT_RUNPATH):
                paths[tag] = value
        if strtab is None:
            raise ValueError(f"{path}: no string table")
        for vaddr, offset, size in loads:
            if vaddr <= strtab < vaddr + size:
                strings = strtab - vaddr + offset
                break
        else:
            raise ValueError(f"{path}: string table outside the file")

        def string(at: int) -> str:
            f.seek(strings + at)
            chunk = f.read(4096)
            end = chunk.find(b"\0")
            if end < 0:
                raise ValueError(f"{path}: unterminated string")
            return os.fsdecode(chunk[:end])

        names = [string(at) for at in needed]
        # The loader ignores DT_RPATH where DT_RUNPATH is present.
        search = paths.get(_DT_RUNPATH, paths.get(_DT_RPATH))
        origin = os.path.dirname(os.path.abspath(path))
        folders = []
        if search is not None:
            for folder in string(search).split(":"):
                folder = folder.replace("${ORIGIN}", origin).replace("$ORIGIN", origin)
                if folder and "$" not in folder:
                    folders.append(folder)
        return names, folders


class LibrarySearch:
    """Where the dynamic loader looks for a soname, read from files only:
    the object's RUNPATH, LD_LIBRARY_PATH, the loader's cache and its default
    folders. It errs towards "found": the loader has the last word."""

    def __init__(
        self,
        library_path: Iterable[str] = (),
        cache: bytes | None = None,
        default_dirs: Iterable[str] = DEFAULT_DIRS,
    ) -> None:
        self.library_path = [d for d in library_path if d]
        if cache is None:
            try:
                with open(LD_SO_CACHE, "rb") as f:
                    cache = f.read()
            except OSError:
                cache = b""
        self.cache = cache
        self.default_dirs = list(default_dirs)
        self.known: dict[str, bool] = {}

    def bundled(self, soname: str, folders: Iterable[str]) -> str | None:
        """The file ``soname`` resolves to in ``folders`` or LD_LIBRARY_PATH."""
        if "/" in soname:
            return soname if os.path.exists(soname) else None
        for folder in (*folders, *self.library_path):
            candidate = os.path.join(folder, soname)
            if os.path.exists(candidate):
                return candidate
        return None

    def on_system(self, soname: str) -> bool:
        known = self.known.get(soname)
        if known is None:
            # The cache's strings are sonames and the paths they resolve to (one
            # of another architecture only errs towards "found").
            name = os.fsencode(soname)
            known = (b"/" + name + b"\0") in self.cache or any(
                os.path.exists(os.path.join(d, soname)) for d in self.default_dirs
            )
            self.known[soname] = known
        return known


def unresolved_libraries(plugin: str, search: LibrarySearch) -> list[str]:
    """The sonames that ``plugin`` and the libraries it finds next to it (Qt's
    own) need and that nothing on the loader's path provides, in link order.
    The system's libraries are not followed: their packages bring what they
    need."""
    missing: list[str] = []
    seen = {os.path.normpath(plugin)}
    todo = [plugin]
    while todo:
        library = todo.pop(0)
        try:
            names, folders = elf_dynamic(library)
        except (OSError, ValueError):
            if library == plugin:
                raise
            continue  # found, not followed: the loader has the last word
        for soname in names:
            found = search.bundled(soname, folders)
            if found is not None:
                path = os.path.normpath(found)
                if path not in seen:
                    seen.add(path)
                    todo.append(found)
            elif not search.on_system(soname) and soname not in missing:
                missing.append(soname)
    return missing


def _loads(path_or_soname: str) -> bool:
    """Whether the dynamic loader opens it (and everything it needs)."""
    import ctypes  # only on this rare path: the window's start-up goes without

    try:
        ctypes.CDLL(path_or_soname)
    except OSError:
        return False
    return True


def platforms(environ: Mapping[str, str]) -> list[str]:
    """The platform plugins Qt 6 will try, in order (QGuiApplication's rules on
    Linux: QT_QPA_PLATFORM wins; else Wayland first in a Wayland session, then
    X11)."""
    chosen = environ.get("QT_QPA_PLATFORM", "")
    if chosen:
        names = chosen.split(";")
    else:
        wayland = "WAYLAND_DISPLAY" in environ or environ.get("XDG_SESSION_TYPE") == "wayland"
        names = ["wayland", "xcb"] if wayland else ["xcb"]
    return [n.split(":", 1)[0].strip() for n in names if n.strip()]


def qt_folder() -> str | None:
    """PySide6's Qt folder (plugins/, lib/), found without importing PySide6."""
    meipass = getattr(sys, "_MEIPASS", None)
    if getattr(sys, "frozen", False) and meipass:
        return os.path.join(meipass, "PySide6", "Qt")
    from importlib.util import find_spec

    spec = find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(next(iter(spec.submodule_search_locations)), "Qt")


def xcb_plugins(environ: Mapping[str, str], qt: str | None) -> list[str]:
    """The copies of ``libqxcb.so`` Qt may load, the one it tries first first."""
    folders = [environ.get("QT_QPA_PLATFORM_PLUGIN_PATH", "")]
    folders += [os.path.join(p, "platforms") for p in environ.get("QT_PLUGIN_PATH", "").split(":")]
    if qt:
        folders.append(os.path.join(qt, "plugins", "platforms"))
    plugins: list[str] = []
    for folder in folders:
        plugin = os.path.join(folder, "libqxcb.so")
        if folder and os.path.isfile(plugin) and plugin not in plugins:
            plugins.append(plugin)
    return plugins


def missing_libraries(
    plugins: list[str], search: LibrarySearch, loads: Callable[[str], bool] = _loads
) -> list[str]:
    """The libraries no copy of the plugin can load without; none where any
    copy of it would load."""
    first: list[str] | None = None
    for plugin in plugins:
        missing = unresolved_libraries(plugin, search)
        if not missing:
            return []
        first = missing if first is None else first
    if first is None or any(loads(p) for p in plugins):
        return []
    return sorted(soname for soname in first if not loads(soname))


def install_hint(
    missing: list[str], which: Callable[[str], str | None] | None = None, root: bool | None = None
) -> str:
    """How to install the packages that provide ``missing``, in words."""
    if which is None:
        import shutil

        which = shutil.which
    if root is None:
        root = os.geteuid() == 0
    sudo = "" if root else "sudo "
    if which("apt-get") or which("apt"):
        tool, table = "apt install", DEBIAN_PACKAGES
    elif which("dnf"):
        tool, table = "dnf install", FEDORA_PACKAGES
    else:
        return "install the packages that provide them with your package manager"
    packages = list(dict.fromkeys(table[s] for s in missing if s in table))
    unknown = [s for s in missing if s not in table]
    which_provides = (
        f"the package that provides {unknown[0]}"
        if len(unknown) == 1
        else f"the packages that provide {', '.join(unknown)}"
    )
    if not packages:
        return f"install {which_provides}"
    command = f"{sudo}{tool} {' '.join(packages)}"
    if unknown:
        return f"install {which_provides} and run: {command}"
    return f"install them with: {command}"


def message(missing: list[str], hint: str) -> str:
    return (
        f"localchat: the window cannot open: this system lacks {', '.join(missing)}, "
        "which Qt needs to show windows on X11 (the localchat commands, such as "
        f"`localchat chat`, work without them); {hint}"
    )


def check(environ: Mapping[str, str] | None = None) -> str | None:
    """One line saying which libraries the window needs and how to install
    them, or None where Qt's X11 plugin will load (or the check does not
    apply: not Linux, another platform plugin, no PySide6 found)."""
    if not sys.platform.startswith("linux"):
        return None
    environ = os.environ if environ is None else environ
    if set(platforms(environ)) != {"xcb"}:
        return None  # Wayland, offscreen...: only X11 is checked
    try:
        plugins = xcb_plugins(environ, qt_folder())
        if not plugins:
            return None
        library_path = environ.get("LD_LIBRARY_PATH", "").split(":")
        meipass = getattr(sys, "_MEIPASS", None)
        if meipass:
            library_path.append(meipass)
        missing = missing_libraries(plugins, LibrarySearch(library_path))
        return message(missing, install_hint(missing)) if missing else None
    except Exception:  # advisory only: a check that fails leaves it to Qt
        return None
