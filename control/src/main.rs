//! `flocker-control`: see the library for the parts; this is flags, logging and the exit code.

use std::process::ExitCode;

use clap::Parser;
use flocker_control::options::{Command, Options};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let options = Options::parse();
    if let Some(Command::Migrate { from, to }) = &options.command {
        let settings = options.zookeeper_settings().map_err(anyhow::Error::msg);
        return exit_code(settings.and_then(|s| flocker_control::migrate(from, to, &s)));
    }
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(64)
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(flocker_control::run(options)));
    exit_code(result)
}

fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("flocker-control: {error:#}");
            ExitCode::FAILURE
        }
    }
}
