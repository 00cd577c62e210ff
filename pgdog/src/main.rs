//! The `pgdog` binary.

use std::process::ExitCode;

use clap::Parser;
use pgdog::cli::{self, Cli, Command};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo shows its own progress on stdout; pgdog's info logs would drown it.
    let default_log = match cli.command {
        Some(Command::Demo(_)) => "warn",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_log)),
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
        Some(Command::Demo(args)) => pgdog::demo::run(
            args,
            Box::new(std::io::stdout()),
            std::io::IsTerminal::is_terminal(&std::io::stdout()),
        ),
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
        Some(Command::Verify(args)) => cli::load(&cli)
            .and_then(|config| cli::verify::run(&config, args, &mut std::io::stdout())),
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
