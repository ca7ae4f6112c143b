//! The `imgferry` binary: hands argv to [`imgferry::cli`] and exits with its code.

fn main() {
    let code = imgferry::cli::main();
    std::process::exit(code);
}
