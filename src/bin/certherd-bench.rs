//! certherd-bench: work in progress (issue 5).
fn main() {
    eprintln!("certherd-bench: not written yet");
    std::process::exit(1);
}
