//! The `plangraph` binary: the command line in `plangraph::cli`, run on a
//! multi-threaded runtime.

use std::process::ExitCode;

use clap::Parser;

use plangraph::cli::{Cli, run};

/// A GraphQL response is built from many small allocations on every worker
/// thread at once; glibc's allocator spent a large share of the dashboard
/// benchmark's server CPU in malloc/free and on its arena locks.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    plangraph::observability::init_logging(cli.config.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("plangraph: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("plangraph: {error}");
            ExitCode::FAILURE
        }
    }
}
