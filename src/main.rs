//! The `build-distro` binary: parse the command line, call the library, print, exit.

mod cli;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    let ctx = cli::Ctx::new(&args.global);
    // Ctrl-C and SIGTERM only raise a flag: the running stage notices it, returns
    // `Error::Interrupted`, and every guard (mounts, containers, build dirs) undoes itself.
    build_distro::interrupt::install_handler();
    let code = match cli::run(args.command, &ctx) {
        Ok(status) => status as u8,
        Err(e) => {
            ctx.print_error(&e);
            e.exit_code()
        }
    };
    std::process::exit(code.into());
}
