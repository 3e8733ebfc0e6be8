"""`cxrbench weights`: the weight files each method family needs, where they were found, and their pins;
`cxrbench weights fetch`: download them through their publishers' libraries (docs/weights.md)."""

from __future__ import annotations

from pathlib import Path

import click

WEIGHTS_HELP = "Weights folder, or a Hugging Face hub cache (default: $CXRBENCH_HOME/weights, else the hub cache)."


@click.group(invoke_without_command=True)
@click.option("--weights", type=click.Path(path_type=Path), help=WEIGHTS_HELP)
@click.option(
    "--pin",
    is_flag=True,
    help="Record the sha256 of the present files that have none yet in <weights>/SHA256SUMS "
    "(a pinned file whose content changed is refused).",
)
@click.option(
    "--repin",
    multiple=True,
    metavar="FILE",
    help="Replace the recorded sha256 of FILE (as listed, e.g. radgraph-xl/weights.th) after you fetched it again.",
)
@click.pass_context
def weights(ctx: click.Context, weights: Path | None, pin: bool, repin: tuple[str, ...]) -> None:
    """List the weight files each method family needs, whether they are present and verified, and where each
    was found."""
    if ctx.invoked_subcommand is not None:
        if pin or repin:
            raise click.UsageError("--pin and --repin go without a subcommand (`weights fetch` pins what it places)")
        return
    from cxrbench import weights as registry

    root = registry.weights_root(weights)
    if weights is not None or pin or repin:
        registry.check_folder(root)
    if repin:
        for change in registry.repin(root, repin):
            click.echo(f"{change.path}: sha256 {change.old or 'none'} -> {change.new}", err=True)
    if pin:
        recorded = registry.pin(root)
        click.echo(f"recorded {len(recorded)} new hash(es) in {root / registry.PIN_FILE}", err=True)
    source = registry.view_source(root)
    click.echo(f"weights folder: {root}" + ("" if root.is_dir() else " (does not exist yet)"))
    if source:
        click.echo(f"  (a view of the Hugging Face hub cache {source})")
    for row in registry.status(root):
        click.echo(f"  {row['family']:<9} {row['file']:<76} {row['status']}")
        if not row["found"]:  # missing, or an optional file its repo does not have
            click.echo(f"  {'':<9} from: {row['source']}")
        elif row["found"] != str(root / row["file"]):
            click.echo(f"  {'':<9} found: {row['found']}")


@weights.command("fetch")
@click.argument("families", nargs=-1, required=True)
@click.option(
    "--weights", type=click.Path(path_type=Path), help="Weights folder to fill (default: $CXRBENCH_HOME/weights)."
)
@click.option(
    "--revision",
    help="Revision of the family's Hugging Face repo, or the LDM bundle's version (default: the revision "
    "cxrbench pins: hi-ml-multimodal's for biovil/biovil-t, the supported bundle version for ldm, else main); "
    "recorded in PROVENANCE.json.",
)
@click.option(
    "--hub-cache",
    type=click.Path(path_type=Path),
    help="Hugging Face hub cache to download through (default: its own).",
)
@click.option("--bundle-url", metavar="URL", help="Where to get the LDM bundle zip from (default: MONAI's source).")
@click.pass_context
def fetch(
    ctx: click.Context,
    families: tuple[str, ...],
    weights: Path | None,
    revision: str | None,
    hub_cache: Path | None,
    bundle_url: str | None,
) -> None:
    """Download FAMILIES (biovil, biovil-t, ldm, radgraph) into the weights folder, then pin them."""
    from cxrbench.weights import layout_root
    from cxrbench.weights_fetch import PROVENANCE_FILE
    from cxrbench.weights_fetch import fetch as fetch_families

    root = layout_root(weights or ctx.parent.params.get("weights"))  # `weights --weights DIR fetch` too
    fetched = fetch_families(families, root, revision, hub_cache, bundle_url)
    for f in fetched:
        click.echo(f"  {f.path:<72} {f.sha256[:16]}  {f.source}@{f.revision[:12]}")
    click.echo(f"placed and pinned {len(fetched)} file(s) in {root} (provenance: {root / PROVENANCE_FILE})", err=True)
