use clap::Parser;

/// glibc's malloc took a sixth of the CPU under load (arena locks shared by the runtime's
/// worker threads and SQLite's); jemalloc takes about a tenth off the CPU per presign
/// request (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
