use clap::Parser;

/// glibc's malloc took a sixth of the CPU under load (arena locks shared by the runtime's
/// worker threads and SQLite's); mimalloc's thread-local heaps cut the presign path's CPU per
/// request by about a tenth (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
