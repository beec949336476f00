"""What a program, and whoever sends it over the control channel, may reach (docs/security.md).

Classes, files and modules named in a program resolve here, and nowhere
else, to one of: the workspace's own code, a named framework namespace,
the run directory (writes) or the workspace and the run directories
(reads). Anything beyond needs a ``COMMAND_CONTROLLER`` setting, which every
refusal names. Each decision is taken before anything is imported or
opened: on the path as written, then again on what it resolves to (a
symbolic link, a re-exported name) before it is used.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from importlib.machinery import FrozenImporter, PathFinder
from pathlib import Path
from typing import Any

import attrs

from deepleaps.lang.diagnostics import Diagnostic, ProgramError

#: Module namespaces whose classes a program may name besides the workspace's own code: the
#: layers, losses, optimizers and schedulers of torch, its data sets and samplers (not its data
#: pipes, which read and write files), and deepleaps' transforms and trainer container.
CLASS_NAMESPACES = (
    "torch.nn",
    "torch.optim",
    "torch.utils.data.dataset",
    "torch.utils.data.sampler",
    "deepleaps.train.transforms",
    "deepleaps.train.container",
)
#: The settings that widen each limit, as every refusal names them.
CLASSES_SETTING = "COMMAND_CONTROLLER.allow_classes"
READ_SETTING = "COMMAND_CONTROLLER.allow_read"
WRITE_SETTING = "COMMAND_CONTROLLER.allow_write"
MODULES_SETTING = "COMMAND_CONTROLLER.allow_external_modules"
PICKLE_SETTING = "COMMAND_CONTROLLER.allow_pickle"


def refuse(message: str) -> ProgramError:
    return ProgramError([Diagnostic(message)])


# ---- modules --------------------------------------------------------------------------------


def check_module(name: str, workspace: Path | None, allow_external: bool) -> None:
    """Refuse module ``name`` unless its source file, and each parent's, lies in ``workspace``.

    Decided by the files the import would load, found without importing
    anything: a module already imported by the file it was loaded from, any
    other with :class:`~importlib.machinery.PathFinder` on its parent's
    locations (only once the parent was found inside). Built-in and frozen
    modules have no file and are refused, as is everything without a workspace.

    Raises:
        ProgramError: the module is outside the workspace (the message names
            ``COMMAND_CONTROLLER.allow_external_modules``) or does not exist.
    """
    if allow_external:
        return
    outside = f"module '{name}' is not in the workspace; set {MODULES_SETTING} to import it"
    if workspace is None:
        raise refuse(outside)
    root = workspace.resolve()
    search: list[str] | None = None  # None: sys.path, for the top-level package
    parts = name.split(".")
    for index in range(len(parts)):
        dotted = ".".join(parts[: index + 1])
        files = _module_files(dotted, search)
        if files is None:
            raise refuse(f"no module named '{dotted}'")
        origin, locations = files
        if not origin and not locations:  # built-in or frozen: no file at all
            raise refuse(outside)
        if not all(_inside(Path(path), root) for path in [*([origin] if origin else []), *locations]):
            raise refuse(outside)
        search = locations
        if index < len(parts) - 1 and not search:
            raise refuse(f"no module named '{name}': '{dotted}' is not a package")


def _module_files(dotted: str, search: list[str] | None) -> tuple[str | None, list[str]] | None:
    """The file and package folders ``dotted`` is (or would be) loaded from; None if there is no such module."""
    loaded = sys.modules.get(dotted)
    if loaded is not None:
        return getattr(loaded, "__file__", None), list(getattr(loaded, "__path__", None) or [])
    if search is None and (dotted in sys.builtin_module_names or FrozenImporter.find_spec(dotted) is not None):
        return None, []
    spec = PathFinder.find_spec(dotted, search)
    if spec is None:
        return None
    origin = spec.origin if spec.has_location else None
    return origin, list(spec.submodule_search_locations or [])


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder)


# ---- the policy ------------------------------------------------------------------------------


@attrs.frozen
class Confinement:
    """Where one run's program may reach; built from the ``COMMAND_CONTROLLER`` settings.

    ``runs`` is the folder of the workspace's run directories (read: a run may
    start from another's checkpoint); ``run_dir`` the run's own, where its
    commands write (unknown until the run directory exists: writes are then
    checked against ``runs``).
    """

    workspace: Path = attrs.field(converter=lambda path: Path(path).resolve())
    runs: Path | None = attrs.field(default=None, converter=lambda path: None if path is None else Path(path).resolve())
    run_dir: Path | None = attrs.field(
        default=None, converter=lambda path: None if path is None else Path(path).resolve()
    )
    classes: tuple[str, ...] = ()
    read: tuple[Path, ...] = attrs.field(default=(), converter=lambda paths: tuple(Path(p).resolve() for p in paths))
    write: tuple[Path, ...] = attrs.field(default=(), converter=lambda paths: tuple(Path(p).resolve() for p in paths))
    external_modules: bool = False
    pickle: bool = False

    @property
    def namespaces(self) -> tuple[str, ...]:
        return (*CLASS_NAMESPACES, *self.classes)

    def in_run(self, run_dir: Path) -> Confinement:
        return attrs.evolve(self, run_dir=run_dir)

    # ---- classes --------------------------------------------------------------------------

    def class_problem(self, path: str) -> str | None:
        """Why the class written ``path`` may not be named, decided on the name alone
        (and on the class itself when its module is imported already)."""
        parts = path.split(".")
        if not all(part.isidentifier() for part in parts):
            return f"'{path}' is not a class path such as torch.nn.Linear"
        if len(parts) == 1:
            return None  # a name looked up in the command's own module (Adam, CrossEntropyLoss …)
        module, name = ".".join(parts[:-1]), parts[-1]
        refused = self._refused_class(path)
        if name.startswith("_") or not self._may_import(module):
            return refused
        loaded = sys.modules.get(module)
        if loaded is not None and hasattr(loaded, name) and not self._allowed_object(getattr(loaded, name)):
            return refused
        return None

    def load_class(self, path: str, default_module: Any = None) -> Any:
        """The class (or, from the workspace, factory) ``path`` names, imported once allowed.

        Raises:
            ProgramError: it is not allowed, or not found.
        """
        problem = self.class_problem(path)
        if problem is not None:
            raise refuse(problem)
        module_name, _, name = path.rpartition(".")
        if module_name:
            try:
                module = importlib.import_module(module_name)
            except ImportError as error:
                raise refuse(f"cannot import '{module_name}' (for '{path}'): {error}") from None
        elif default_module is not None:
            module = default_module
        else:
            raise refuse(f"'{path}' is not a module path such as torch.nn.Linear")
        if not hasattr(module, name):
            raise refuse(f"cannot find '{path}': module '{module.__name__}' has no '{name}'")
        found = getattr(module, name)
        if name.startswith("_") or not self._allowed_object(found):
            raise refuse(self._refused_class(path))
        return found

    def _refused_class(self, path: str) -> str:
        return (
            f"class '{path}' is neither the workspace's code nor in {', '.join(self.namespaces)}; "
            f"set {CLASSES_SETTING} to name it"
        )

    def _may_import(self, module: str) -> bool:
        """A module in an allowed namespace or a package above one, or the workspace's own."""
        if any(_within(module, space) or _within(space, module) for space in self.namespaces):
            return True
        try:
            check_module(module, self.workspace, self.external_modules)
        except ProgramError:
            return False
        return True

    def _allowed_object(self, found: Any) -> bool:
        """A class defined in an allowed namespace, or anything the workspace's own code defines."""
        module = getattr(found, "__module__", None)
        if not isinstance(module, str):
            return False
        if isinstance(found, type) and any(_within(module, space) for space in self.namespaces):
            return True
        defined_in = sys.modules.get(module)
        file = getattr(defined_in, "__file__", None)
        return callable(found) and (self.external_modules or (file is not None and _inside(Path(file), self.workspace)))

    # ---- files ----------------------------------------------------------------------------

    def path_problem(self, value: str, mode: str) -> str | None:
        """Why ``value``, written where a command reads (``mode`` "read") or writes ("write")
        a file, is refused as written: a path that climbs out of the folder it is relative to,
        or an absolute one outside every folder allowed. Relative paths are decided again,
        resolved, when they are used."""
        if "\0" in value:
            return f"'{value!r}' is not a path"
        path = Path(value)
        if path.is_absolute():
            return (
                None
                if any(_inside(path, folder) for folder in self._folders(mode))
                else self._refused_path(value, mode)
            )
        if os.path.normpath(value).split(os.sep)[0] == os.pardir:
            return self._refused_path(value, mode)
        return None

    def writable(self, path: Path | str) -> Path:
        """``path`` (relative ones against the run directory), once it resolves inside a folder writes may go to."""
        return self._confined(path, self.run_dir or self.runs or self.workspace, "write")

    def readable(self, path: Path | str) -> Path:
        """``path`` (relative ones against the workspace), once it resolves inside a folder reads may come from."""
        return self._confined(path, self.workspace, "read")

    def _confined(self, path: Path | str, base: Path, mode: str) -> Path:
        written = str(path)
        if "\0" in written:
            raise refuse(f"{written!r} is not a path")
        full = Path(written) if Path(written).is_absolute() else base / written
        if not any(_inside(full, folder) for folder in self._folders(mode)):
            raise refuse(self._refused_path(written, mode))
        return full

    def _folders(self, mode: str) -> Sequence[Path]:
        if mode == "write":
            own = [self.run_dir] if self.run_dir is not None else [self.runs] if self.runs is not None else []
            return [*own, *self.write]
        return [folder for folder in (self.workspace, self.runs, self.run_dir) if folder is not None] + list(self.read)

    def _refused_path(self, value: str, mode: str) -> str:
        if mode == "write":
            return f"'{value}' is outside the run directory; set {WRITE_SETTING} to write there"
        return f"'{value}' is outside the workspace and the run directories; set {READ_SETTING} to read there"


def _within(module: str, namespace: str) -> bool:
    return module == namespace or module.startswith(namespace + ".")
