//! The `pgdog` binary.

use std::process::ExitCode;

use clap::Parser;
use pgdog::cli::{self, Cli, Command};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match &cli.command {
        Some(Command::Hash { password }) => {
            println!("{}", cli::hash(password));
            Ok(())
        }
        Some(Command::Configcheck) => cli::load(&cli).map(|_| {
            println!(
                "{} and {} are valid",
                cli.config.display(),
                cli.users.display()
            );
        }),
        Some(Command::Demo { port }) => pgdog::demo::Demo::start(*port).and_then(|demo| {
            eprintln!("\n{}", demo.instructions());
            demo.run()
        }),
        Some(Command::SchemaSync(args)) => cli::load(&cli).and_then(|config| {
            cli::schema_sync::run(
                &config,
                args,
                &mut std::io::stdout(),
                &mut std::io::stderr(),
            )
        }),
        Some(Command::DataSync(args)) => cli::load(&cli).and_then(|config| {
            cli::data_sync::run(
                &config,
                args,
                &mut std::io::stdout(),
                &mut std::io::stderr(),
            )
        }),
        Some(Command::Cleanup(args)) => cli::load(&cli)
            .and_then(|config| cli::cleanup::run(&config, args, &mut std::io::stdout())),
        None | Some(Command::Run) => cli::load(&cli).and_then(cli::run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgdog: {e}");
            ExitCode::FAILURE
        }
    }
}
