//! Helpers for the end-to-end tests that build their own hosts in network
//! namespaces (SPEC.md section 5): unique names, and removal on every exit
//! path, panics included.

use std::io;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// Runs a command and fails with its stderr if it fails.
pub fn run(cmd: &str, args: &[&str]) -> io::Result<Output> {
    let out = Command::new(cmd).args(args).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out)
}

/// A network namespace that exists as long as this value: created with a
/// name unique to the process and the test, deleted on drop (which also
/// deletes the interfaces inside it and detaches their XDP programs).
#[derive(Debug)]
pub struct Netns {
    name: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Netns {
    /// Creates `glbt-<role>-<pid>-<n>`, with loopback up.
    pub fn new(role: &str) -> io::Result<Netns> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("glbt-{role}-{}-{n}", std::process::id());
        run("ip", &["netns", "add", &name])?;
        let ns = Netns { name };
        ns.exec("ip", &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, cmd: &str, args: &[&str]) -> io::Result<Output> {
        let mut all = vec!["netns", "exec", &self.name, cmd];
        all.extend_from_slice(args);
        run("ip", &all)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .output();
    }
}

/// Whether a namespace of that name exists.
pub fn netns_exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_unique_isolated_and_removed_even_on_panic() {
        let a = Netns::new("selftest").unwrap();
        let b = Netns::new("selftest").unwrap();
        assert_ne!(a.name(), b.name());
        assert!(netns_exists(a.name()));
        // Inside, only loopback exists: no route out of the lab.
        let links = String::from_utf8(a.exec("ip", &["-o", "link"]).unwrap().stdout).unwrap();
        assert_eq!(links.lines().count(), 1, "{links}");
        let routes = String::from_utf8(a.exec("ip", &["route"]).unwrap().stdout).unwrap();
        assert_eq!(routes.trim(), "");
        let names = (a.name().to_string(), b.name().to_string());
        drop(a);
        assert!(!netns_exists(&names.0));
        let panicked = std::thread::spawn(move || {
            let _held = b;
            panic!("a failing test");
        })
        .join();
        assert!(panicked.is_err());
        assert!(!netns_exists(&names.1), "removed during unwinding");
    }
}
