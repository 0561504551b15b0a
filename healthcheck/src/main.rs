//! The health-check daemon. It is specified by a later issue: this binary
//! exists so the workspace has its final shape, and says so when run.

fn main() {
    eprintln!(
        "healthcheck: not implemented yet (planned: probe backends, push health to every director's API)"
    );
    std::process::exit(2);
}
