"""`python -m meshlet.proxy.init`: install the capture rules in the current netns.

The Kubernetes init container (`meshlet-init`, added by the injector, see
injector/patch.py); locally the runtime renders the same rules itself
(together with its Services chain). Flags mirror istio-iptables.
"""
from __future__ import annotations

import subprocess
import sys

import click
from meshlet.proxy.init.iptables import (
    CaptureConfig,
    RuleError,
    nat_table,
    parse_cidrs,
    parse_include_cidrs,
    parse_ports,
)


@click.command()
@click.option("--proxy-gid", type=int, default=1337, show_default=True, help="Group whose traffic is not redirected.")
@click.option("--exclude-inbound-ports", default="", help="Comma-separated inbound ports to leave alone.")
@click.option("--exclude-outbound-ports", default="", help="Comma-separated outbound ports to leave alone.")
@click.option("--exclude-outbound-cidrs", default="", help="Comma-separated destination CIDRs to leave alone.")
@click.option("--include-outbound-cidrs", default="*", show_default=True,
              help='Only these destination CIDRs are redirected outbound ("*": all, "": none).')
@click.option("--dry-run", is_flag=True, help="Print the iptables-restore payload instead of applying it.")
def main(proxy_gid: int, exclude_inbound_ports: str, exclude_outbound_ports: str,
         exclude_outbound_cidrs: str, include_outbound_cidrs: str, dry_run: bool) -> None:
    """Redirect this network namespace's TCP traffic through the meshlet proxy."""
    try:
        cfg = CaptureConfig(
            proxy_gid=proxy_gid,
            exclude_inbound_ports=parse_ports(exclude_inbound_ports),
            exclude_outbound_ports=parse_ports(exclude_outbound_ports),
            exclude_outbound_cidrs=parse_cidrs(exclude_outbound_cidrs),
            include_outbound_cidrs=parse_include_cidrs(include_outbound_cidrs),
        )
    except RuleError as e:
        raise click.BadParameter(str(e)) from None
    payload = nat_table(cfg)
    if dry_run:
        click.echo(payload, nl=False)
        return
    proc = subprocess.run(["iptables-restore"], check=False, input=payload.encode(), capture_output=True, timeout=30)
    if proc.returncode != 0:
        click.echo(f"iptables-restore failed: {proc.stderr.decode().strip()}", err=True)
        sys.exit(1)
    click.echo("meshlet capture rules installed")


if __name__ == "__main__":
    main()
