use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = presignd::cli::Cli::parse();
    match presignd::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("presignd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
