"""Build LocalChat's installers: the same command on every platform.

    python packaging/build.py                 # the bundle, then this platform's installer
    python packaging/build.py --backend cuda  # llama.cpp rebuilt for CUDA first

1. **Bundle** (all platforms): PyInstaller runs ``packaging/localchat.spec`` and
   leaves one folder, ``dist/LocalChat/``: Python, the app, PySide6 (only the Qt
   modules it imports), llama.cpp's libraries, the assets and the demo model.
2. **Installer** for the platform it runs on:
   - Linux: ``dist/localchat_<version>_<arch>.deb`` (``dpkg-deb``): the bundle in
     ``/opt/localchat``, ``localchat`` on PATH, a desktop entry, icons, AppStream
     metadata; its Depends are worked out from the libraries the bundle links.
   - Windows: ``dist/LocalChat-Setup-<version>.exe`` (Inno Setup's ``iscc``).
   - macOS: ``dist/LocalChat.app`` in ``dist/LocalChat-<version>.dmg``
     (``hdiutil``), signed and notarised when the certificate is configured
     (``packaging/macos/sign.sh``), left unsigned otherwise.

The sizes of the bundle and the installer are printed at the end. Needs the
``package`` extra (``pip install -e ".[package]"``) in the environment whose
packages are bundled.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout being bundled, as the spec does
from localchat import __version__  # noqa: E402
from localchat.core.units import human_size  # noqa: E402
from localchat.ui.display_check import DEBIAN_PACKAGES, elf_dynamic  # noqa: E402

SPEC = ROOT / "packaging" / "localchat.spec"
ASSETS = ROOT / "assets"
PACKAGE = "localchat"
MAINTAINER = "LocalChat developers <localchat@users.noreply.github.com>"
HOMEPAGE = "https://github.com/localchat/localchat"
SUMMARY = "chat with large language models running entirely on your computer"
DESCRIPTION = """\
LocalChat runs GGUF language models with llama.cpp on your own CPU or GPU: no
account, no cloud, nothing leaves the machine. It downloads and manages models
from Hugging Face, streams replies token by token, keeps your chats in a local
database and fine-tunes a model on your own texts. A tiny demo model is
included, so it chats offline from the first start."""

# llama.cpp's CMake switches for each backend (llama-cpp-python builds
# llama.cpp from source and passes CMAKE_ARGS through). Every build carries
# every CPU variant llama.cpp has, as loadable libraries, and ggml loads the
# best one for the CPU it runs on (as llama.cpp's own releases, Ollama and LM
# Studio do): an installer built on any machine runs at full speed on every
# x86-64 CPU from SSE4.2 to AMX, and on Apple silicon. A native build
# (GGML_NATIVE, llama.cpp's default) would carry the build machine's CPU:
# made on a runner with AVX-512, it dies with an illegal instruction on a
# laptop without it.
PORTABLE = (
    "-DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON"
    # The variants link libggml-base beside them, not in the (deleted) build tree.
    " -DCMAKE_BUILD_RPATH_USE_ORIGIN=ON"
)
BACKENDS = {
    "cpu": PORTABLE,
    "cuda": f"{PORTABLE} -DGGML_CUDA=on",
    "metal": f"{PORTABLE} -DGGML_METAL=on",
    "vulkan": f"{PORTABLE} -DGGML_VULKAN=on",
}

# Qt plugins a Linux desktop needs; the others (GTK theme, Wayland shells, EGL
# device integrations...) load only where their libraries exist, so their
# libraries are not made dependencies of the package.
REQUIRED_QT_PLUGINS = ("platforms/libqxcb.so", "xcbglintegrations/", "imageformats/")


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run(cmd, check=True, **kwargs)


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


# -- the bundle ------------------------------------------------------------------


def rebuild_llama(backend: str) -> None:
    """Rebuild llama-cpp-python (same version) in this environment for
    ``backend``, with every CPU variant, so the bundle carries that build of
    llama.cpp. (About half an hour on two cores: 14 x86 variants.)"""
    from importlib.metadata import version as installed

    pin = installed("llama-cpp-python")
    env = {**os.environ, "CMAKE_ARGS": BACKENDS[backend], "FORCE_CMAKE": "1"}
    with tempfile.TemporaryDirectory(prefix="llama-build-") as build_dir:
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--force-reinstall",
                "--no-deps",
                "--no-binary",
                "llama-cpp-python",
                "--no-cache-dir",
                # Kept to the end of this block: see install_cpu_variants.
                "--config-settings",
                f"build-dir={build_dir}",
                f"llama-cpp-python=={pin}",
            ],
            env=env,
        )
        install_cpu_variants(Path(build_dir), llama_lib_dir())


def llama_lib_dir() -> Path:
    """llama-cpp-python's library folder, where the worker loads backends from."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        raise SystemExit("error: llama-cpp-python is not installed here")
    return Path(spec.origin).parent / "lib"


def install_cpu_variants(build_dir: Path, lib_dir: Path) -> list[Path]:
    """llama-cpp-python installs the libraries it names (ggml-cpu, ggml-cuda...),
    not the CPU variants a GGML_CPU_ALL_VARIANTS build makes (ggml-cpu-haswell,
    ggml-cpu-zen4...): copy those from the build tree beside libggml."""
    for stale in lib_dir.glob("*ggml-cpu-*"):  # an earlier build's, unknown to pip
        stale.unlink()
    copied = []
    for path in sorted(build_dir.rglob("*ggml-cpu-*")):
        if path.is_file() and path.suffix in (".so", ".dll", ".dylib"):
            target = lib_dir / path.name
            shutil.copy2(path, target)
            copied.append(target)
    if not copied:
        raise SystemExit(f"error: the llama.cpp build in {build_dir} made no CPU variants")
    print(f"CPU variants: {', '.join(p.name for p in copied)}")
    return copied


def bundle(dist: Path, work: Path) -> Path:
    run(
        [
            sys.executable,
            "-m",
            "PyInstaller",
            "--noconfirm",
            "--clean",
            "--log-level",
            "WARN",
            "--distpath",
            str(dist),
            "--workpath",
            str(work),
            str(SPEC),
        ],
        cwd=ROOT,
    )
    folder = dist / "LocalChat"
    if not (folder / ("localchat.exe" if sys.platform == "win32" else "localchat")).exists():
        raise SystemExit(f"error: PyInstaller left no program in {folder}")
    return folder


# -- Linux: .deb -----------------------------------------------------------------


def deb_arch() -> str:
    try:
        return subprocess.run(
            ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def _elf_files(folder: Path) -> list[Path]:
    found = []
    for path in folder.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        rel = path.relative_to(folder).as_posix()
        if "/plugins/" in rel and not any(p in rel for p in REQUIRED_QT_PLUGINS):
            continue
        with path.open("rb") as f:
            if f.read(4) == b"\x7fELF":
                found.append(path)
    return found


def system_libraries(folder: Path) -> set[str]:
    """The libraries outside the bundle that its programs and required plugins
    link (as ``ldd`` resolves them on this machine). A library the bundle
    carries itself (PyInstaller collects most) is found there at run time."""
    libs: set[str] = set()
    elves = _elf_files(folder)
    carried = {p.name for p in folder.rglob("*.so*")}
    for path in elves:
        proc = subprocess.run(["ldd", str(path)], capture_output=True, text=True)
        for line in proc.stdout.splitlines():
            m = re.match(r"\s*(\S+) => (/\S+)", line)
            if m and m[1] not in carried:
                libs.add(m[2])
    return libs


def owning_packages(libs: set[str]) -> set[str]:
    """The Debian packages that provide ``libs`` (``dpkg -S``), without the
    architecture suffix."""
    packages: set[str] = set()
    for lib in sorted(libs):
        candidates = {lib, os.path.realpath(lib)}
        for c in list(candidates):  # merged /usr: dpkg may know either spelling
            candidates.add(c[4:] if c.startswith("/usr/") else "/usr" + c)
        for c in sorted(candidates):
            proc = subprocess.run(["dpkg", "-S", c], capture_output=True, text=True)
            if proc.returncode == 0:
                for owner in proc.stdout.split(":", 1)[0].split(","):
                    packages.add(owner.strip().split(":")[0])
                break
        else:
            print(f"note: no package provides {lib}; left out of Depends", file=sys.stderr)
    return packages


def glibc_floor() -> str | None:
    libc = os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else None
    return libc.split()[-1] if libc and libc.startswith("glibc") else None


# Not linked, read at run time: the bundled fontconfig reads the system's
# configuration (and Qt needs a font to draw anything).
EXTRA_DEPENDS = ("fontconfig-config",)
RECOMMENDS = "fonts-dejavu-core | fonts-noto-core"


def xcb_packages(folder: Path) -> set[str]:
    """The packages of the libraries Qt's X11 plugin and its Qt library
    (libQt6XcbQpa) link, read from the plugin itself: ``ldd`` cannot resolve
    the ones this machine lacks (a fresh Debian has no libxcb-icccm4), and the
    ones PyInstaller collected would not count as system libraries. Without
    them the installed program cannot open its window."""
    packages: set[str] = set()
    for name in ("libqxcb.so", "libQt6XcbQpa.so.6"):
        for path in folder.rglob(name):
            needed, _search = elf_dynamic(str(path))
            packages.update(DEBIAN_PACKAGES[n] for n in needed if n in DEBIAN_PACKAGES)
    return packages


def depends(folder: Path) -> str:
    packages = owning_packages(system_libraries(folder)) | set(EXTRA_DEPENDS)
    packages |= xcb_packages(folder)
    floor = glibc_floor()
    entries = []
    for name in sorted(packages):
        if name == "libc6" and floor:
            entries.append(f"libc6 (>= {floor})")
        else:
            entries.append(name)
    return ", ".join(entries)


def deb(folder: Path, dist: Path, ver: str) -> Path:
    arch = deb_arch()
    stage = dist / "deb-root"
    shutil.rmtree(stage, ignore_errors=True)
    opt = stage / "opt" / PACKAGE
    shutil.copytree(folder, opt, symlinks=True)
    bin_dir = stage / "usr" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / PACKAGE).symlink_to(f"../../opt/{PACKAGE}/localchat")
    share = stage / "usr" / "share"
    (share / "applications").mkdir(parents=True)
    shutil.copy2(ASSETS / "localchat.desktop", share / "applications" / "localchat.desktop")
    (share / "metainfo").mkdir(parents=True)
    shutil.copy2(ASSETS / "localchat.metainfo.xml", share / "metainfo" / "localchat.metainfo.xml")
    icons = share / "icons" / "hicolor"
    for png in sorted((ASSETS / "icons").glob("localchat-*.png")):
        n = png.stem.rsplit("-", 1)[1]
        target = icons / f"{n}x{n}" / "apps"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(png, target / "localchat.png")
    (icons / "scalable" / "apps").mkdir(parents=True)
    shutil.copy2(ASSETS / "icons" / "localchat.svg", icons / "scalable" / "apps" / "localchat.svg")
    doc = share / "doc" / PACKAGE
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
        f"Upstream-Name: LocalChat\nSource: {HOMEPAGE}\n\n"
        "Files: *\nLicense: MIT\n Bundled components keep their own licenses (Python: PSF;\n"
        " Qt and PySide6: LGPLv3; llama.cpp: MIT; numpy: BSD); see /opt/localchat/_internal.\n"
    )
    control = stage / "DEBIAN"
    control.mkdir()
    summary_lines = "\n".join(f" {line}" if line else " ." for line in DESCRIPTION.splitlines())
    (control / "control").write_text(
        f"Package: {PACKAGE}\n"
        f"Version: {ver}\n"
        f"Architecture: {arch}\n"
        f"Maintainer: {MAINTAINER}\n"
        f"Installed-Size: {(size_of(stage) + 1023) // 1024}\n"
        f"Depends: {depends(folder)}\n"
        f"Recommends: {RECOMMENDS}\n"
        "Section: utils\n"
        "Priority: optional\n"
        f"Homepage: {HOMEPAGE}\n"
        f"Description: {SUMMARY}\n{summary_lines}\n"
    )
    # No maintainer scripts: dpkg's triggers refresh the icon cache and the
    # desktop database, and the package never touches the user's models and
    # chats (in their home folder), so removing it leaves them alone.
    out = dist / f"{PACKAGE}_{ver}_{arch}.deb"
    run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(stage), str(out)])
    shutil.rmtree(stage)
    return out


# -- Windows and macOS -----------------------------------------------------------


def inno(folder: Path, dist: Path, ver: str) -> Path:
    iscc = shutil.which("iscc") or shutil.which("ISCC")
    default = Path(os.environ.get("PROGRAMFILES(X86)", "C:/Program Files (x86)"))
    if iscc is None and (default / "Inno Setup 6" / "ISCC.exe").exists():
        iscc = str(default / "Inno Setup 6" / "ISCC.exe")
    if iscc is None:
        raise SystemExit("error: Inno Setup's iscc is not installed (choco install innosetup)")
    run(
        [
            iscc,
            f"/DAppVersion={ver}",
            f"/DSourceDir={folder}",
            f"/DOutputDir={dist}",
            str(ROOT / "packaging" / "windows" / "localchat.iss"),
        ]
    )
    return dist / f"LocalChat-Setup-{ver}.exe"


def dmg(dist: Path, ver: str) -> Path:
    app = dist / "LocalChat.app"
    if not app.is_dir():
        raise SystemExit(f"error: PyInstaller left no {app}")
    out = dist / f"LocalChat-{ver}.dmg"
    run(["bash", str(ROOT / "packaging" / "macos" / "sign.sh"), str(app), str(out)])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (dist/)")
    parser.add_argument(
        "--backend",
        choices=sorted(BACKENDS),
        default=None,
        help="rebuild llama-cpp-python for this backend, with every CPU variant, first "
        "(releases do; default: bundle the one installed, which pip built for this machine)",
    )
    parser.add_argument("--bundle-only", action="store_true", help="no installer")
    args = parser.parse_args(argv)
    ver = __version__
    dist = args.out.resolve()
    dist.mkdir(parents=True, exist_ok=True)
    if args.backend:
        rebuild_llama(args.backend)
    folder = bundle(dist, dist / "pyinstaller-work")
    shutil.rmtree(dist / "pyinstaller-work", ignore_errors=True)
    installer = None if args.bundle_only else make_installer(folder, dist, ver)
    print(f"bundle     {folder}  {human_size(size_of(folder))}")
    if installer is not None:
        print(f"installer  {installer}  {human_size(size_of(installer))}")
    return 0


def make_installer(folder: Path, dist: Path, ver: str) -> Path:
    if sys.platform.startswith("linux"):
        return deb(folder, dist, ver)
    if sys.platform == "win32":
        return inno(folder, dist, ver)
    if sys.platform == "darwin":
        return dmg(dist, ver)
    raise SystemExit(f"error: no installer for {sys.platform}")


if __name__ == "__main__":
    sys.exit(main())
