"""Where local projects may live: ``<projects root>/<org slug>/…``, nowhere else.

A project's ``path`` is resolved with every symlink followed, at save time and again at
launch (a symlink swapped in between is caught then). Relative paths are relative to the
org's folder. Anything that resolves outside the org's folder (``/``, ``../../etc``,
another org's folder, a symlink that points out) is refused with a 422 that names the
projects root and the org's folder; so is a path that does not exist.

The org's folder is created (mode 0700) when first needed, so an operator can copy
projects into it.
"""

from __future__ import annotations

from pathlib import Path

from app.errors import FieldError, Invalid

FOLDER_MODE = 0o700


class ProjectPaths:
    """The projects root (``RUNYARD_PROJECTS_ROOT``) and the rules for paths under it."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().absolute()

    def org_folder(self, org_slug: str, *, create: bool = True) -> Path:
        """``<root>/<org slug>`` with the root's own symlinks resolved; created 0700."""
        if not org_slug or "/" in org_slug or org_slug in (".", "..") or "\0" in org_slug:
            raise ValueError(f"not an organization slug: {org_slug!r}")
        root = self.root.resolve()
        folder = root / org_slug
        if create and not folder.exists():
            for directory in (root, folder):
                if not directory.exists():
                    directory.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
                    directory.chmod(FOLDER_MODE)  # whatever the umask
        return folder.resolve() if folder.exists() else folder

    def resolve(self, org_slug: str, path: str, *, field: str = "path") -> Path:
        """The project's directory, resolved; a 422 unless it is an existing directory
        inside the org's folder."""
        folder = self.org_folder(org_slug)
        where = (
            f"Local projects of your organization live in {str(folder)!r} (the projects root "
            f"{str(self.root)!r}, RUNYARD_PROJECTS_ROOT, then your organization's folder "
            f"{org_slug!r}); give a path relative to it, such as 'analytics'."
        )
        if not path.strip():
            raise _invalid(field, "must name a folder", f"The project's path is empty. {where}")
        try:
            candidate = Path(path).expanduser()
            if not candidate.is_absolute():
                candidate = folder / candidate
            resolved = candidate.resolve(strict=False)
        except (ValueError, OSError, RuntimeError) as exc:  # NUL byte, too long, loops
            raise _invalid(
                field, f"is not a usable path ({exc})", f"The path {path!r} is not usable. {where}"
            ) from None
        if not resolved.is_relative_to(folder):
            raise _invalid(
                field,
                f"resolves to {str(resolved)!r}, outside your organization's folder "
                f"{str(folder)!r}",
                f"The path {path!r} resolves to {str(resolved)!r}, outside your "
                f"organization's folder. {where}",
            )
        try:
            resolved = candidate.resolve(strict=True)
        except (OSError, RuntimeError):
            raise _invalid(
                field,
                f"{str(resolved)!r} does not exist",
                f"The path {path!r} ({str(resolved)!r}) does not exist. Put the project "
                f"there first. {where}",
            ) from None
        if not resolved.is_dir():
            raise _invalid(
                field,
                f"{str(resolved)!r} is not a directory",
                f"The path {path!r} ({str(resolved)!r}) is not a directory. {where}",
            )
        return resolved


def _invalid(field: str, message: str, detail: str) -> Invalid:
    return Invalid(detail, [FieldError(field, message)])
