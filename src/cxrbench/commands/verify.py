"""`cxrbench datasets verify`: check every file a dataset reads against PhysioNet's SHA256SUMS.txt
(docs/datasets.md, "Verifying a download")."""

from __future__ import annotations

from pathlib import Path

import click

from cxrbench.errors import DataError


@click.command("verify")
@click.argument("name")
@click.option("--data-root", type=click.Path(path_type=Path), help="Dataset folder (a PhysioNet download as it lies).")
@click.option(
    "--dataset-option", "-O", "options", multiple=True, metavar="KEY=VALUE", help="Dataset option, e.g. images=DIR."
)
def verify(name: str, data_root: Path | None, options: tuple[str, ...]) -> None:
    """Check each file dataset NAME reads against the SHA256SUMS.txt of its PhysioNet project (exit 2 on a
    missing or mismatching file, or one without a SHA256SUMS.txt to check it against)."""
    from cxrbench.commands.common import open_dataset
    from cxrbench.datasets.verify import counts, unchecked_error, verify_files

    dataset = open_dataset(name, data_root, options)
    if not hasattr(dataset, "files"):
        raise DataError(f"dataset {name} does not list the files it reads; nothing to verify")
    checks = verify_files(dataset.files())
    for check in checks:
        if check.state != "ok":
            where = f" ({check.sums})" if check.sums else ""
            click.echo(f"{check.state:<9} {check.path}{where}")
    found = counts(checks)
    sums = sorted({str(c.sums) for c in checks if c.sums})
    line = f"{len(checks)} files, " + ", ".join(f"{n} {state}" for state, n in found.items())
    click.echo(f"{line}; checked against {', '.join(sums) or 'no SHA256SUMS.txt'}", err=True)
    if found["mismatch"] or found["missing"]:
        raise DataError(
            f"{name}: {found['mismatch']} file(s) differ from and {found['missing']} are missing from the download"
        )
    if found["unchecked"]:
        raise unchecked_error(name, checks)
    if hasattr(dataset, "release"):
        release = dataset.release()
        click.echo(
            f"release: {release['project'] or '?'} {release['version'] or '?'}, {release['annotations']} "
            f"sha256 {release['annotations_sha256']}",
            err=True,
        )
