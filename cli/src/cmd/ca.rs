//! `flockerctl ca`: the cluster certificate authority.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use flocker_cli::ca::{self, Written};

#[derive(Subcommand)]
pub enum CaCommand {
    /// Create the cluster CA: cluster.crt and cluster.key
    Initialize {
        /// Name of the cluster (the CA's common name)
        cluster_name: String,
        #[command(flatten)]
        output: Output,
    },
    /// Create the control service's certificate: control-<hostname>.crt/.key
    CreateControlCertificate {
        /// DNS name or IP address at which the control service is reached
        hostname: String,
        #[command(flatten)]
        paths: Paths,
    },
    /// Create a certificate for a new node: <node uuid>.crt/.key
    CreateNodeCertificate {
        #[command(flatten)]
        paths: Paths,
    },
    /// Create an API user's certificate: <username>.crt/.key
    CreateApiCertificate {
        /// Name of the user (letters, digits, '-', '_', '.')
        username: String,
        #[command(flatten)]
        paths: Paths,
    },
}

#[derive(Args)]
pub struct Output {
    /// Directory to write the new files to
    #[arg(short = 'o', long = "outputpath", value_name = "DIR", default_value = ".")]
    outputpath: PathBuf,
}

#[derive(Args)]
pub struct Paths {
    /// Directory holding cluster.crt and cluster.key
    #[arg(short = 'i', long = "inputpath", value_name = "DIR", default_value = ".")]
    inputpath: PathBuf,
    #[command(flatten)]
    output: Output,
}

pub fn run(command: CaCommand) -> anyhow::Result<()> {
    match command {
        CaCommand::Initialize { cluster_name, output } => {
            let written = ca::initialize(&output.outputpath, &cluster_name)?;
            println!(
                "Created {}. Keep {} secret: anyone who can read it can control your cluster.",
                both(&written),
                shown(&written.key)
            );
        }
        CaCommand::CreateControlCertificate { hostname, paths } => {
            let written = ca::create_control_certificate(
                &paths.inputpath,
                &paths.output.outputpath,
                &hostname,
            )?;
            println!(
                "Created {}. Copy them to the control service as control-service.crt and control-service.key.",
                both(&written)
            );
        }
        CaCommand::CreateNodeCertificate { paths } => {
            let (node_id, written) =
                ca::create_node_certificate(&paths.inputpath, &paths.output.outputpath)?;
            println!("Node uuid: {node_id}");
            println!(
                "Created {}. Copy them to the node as /etc/flocker/node.crt and /etc/flocker/node.key.",
                both(&written)
            );
        }
        CaCommand::CreateApiCertificate { username, paths } => {
            let written =
                ca::create_api_certificate(&paths.inputpath, &paths.output.outputpath, &username)?;
            println!(
                "Created {}. Give them to the API user {username} to access the control service.",
                both(&written)
            );
        }
    }
    Ok(())
}

/// "a.crt and a.key", with the directory unless it is the current one.
fn both(written: &Written) -> String {
    format!("{} and {}", shown(&written.certificate), shown(&written.key))
}

fn shown(path: &Path) -> String {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) if parent == Path::new(".") || parent == Path::new("") => {
            name.to_string_lossy().into_owned()
        }
        _ => path.display().to_string(),
    }
}
