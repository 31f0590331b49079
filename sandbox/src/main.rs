//! `cargo run -p sandbox --release -- [flags]`: runs the fake services as a process.

fn main() {
    eprintln!("the sandbox servers are not built yet");
    std::process::exit(2);
}
