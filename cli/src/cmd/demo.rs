//! `flockerctl demo` (being written).

use clap::Args;

#[derive(Args)]
pub struct DemoArgs {}

pub fn run(_args: DemoArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
