//! `flockerctl version`: ours, and the control service's when it answers.

use super::connection::ConnectionArgs;

pub fn run(connection: &ConnectionArgs) -> anyhow::Result<()> {
    println!("flockerctl {}", env!("CARGO_PKG_VERSION"));
    let connection = connection.connect()?;
    let version = connection.call(|c| c.version())?;
    println!("control service {} at {}", version.flocker, connection.address());
    Ok(())
}
