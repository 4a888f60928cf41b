use std::process::ExitCode;

use clap::Parser;

use camnode::config::{Args, Config};

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match Config::from_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("camnode: {e}");
            return ExitCode::from(2);
        }
    };
    if args.print_config {
        match toml::to_string(&config) {
            Ok(text) => {
                print!("{text}");
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("camnode: cannot print the configuration: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    eprintln!("camnode: configuration is valid; serving pictures is not built yet (issue 5)");
    ExitCode::from(3)
}
