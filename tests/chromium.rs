//! Headless Chromium (Debian's `chromium`, installed by `make deps`) run
//! in a lab's namespace, for the status page's tests.

use std::path::Path;
use std::process::Command;

use crate::{Netns, Scratch};

/// Where Debian installs it.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Chromium in `ns` on `url`, with `args` before it (`--dump-dom`,
/// `--screenshot=...`), a fresh profile named `run` in `scratch` (nothing
/// carries over from one run to the next): its stdout and the console
/// lines the page logged. Panics, naming why, if Chromium is missing or
/// fails.
pub fn run(
    ns: &Netns,
    scratch: &Scratch,
    run: &str,
    url: &str,
    args: &[&str],
) -> (String, Vec<String>) {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: the status page's tests need Debian's chromium \
         (`make deps`, or `bash scripts/deps.sh`)"
    );
    let profile = scratch.file(&format!("chromium-{run}"));
    let out = Command::new("ip")
        .args(["netns", "exec", ns.name()])
        // A hung browser fails the test instead of stalling it.
        .args(["timeout", "60", CHROMIUM])
        .args([
            "--headless=new",
            // As root, Chromium runs only without its sandbox.
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--enable-logging=stderr",
            "--v=0",
            // Enough virtual time for the first answers and one refresh
            // (the page refreshes every 2 s); time stands still while a
            // fetch is pending.
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .env("HOME", scratch.file(""))
        .output()
        .unwrap_or_else(|e| panic!("running chromium: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "chromium {url}: {}\n{stderr}",
        out.status
    );
    let console = stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    (String::from_utf8_lossy(&out.stdout).into_owned(), console)
}

/// The start tag of the element carrying `attr` (`id="x"`) in a dumped
/// DOM.
pub fn start_tag<'a>(dom: &'a str, attr: &str) -> &'a str {
    let at = dom
        .find(attr)
        .unwrap_or_else(|| panic!("no element with {attr} in the page:\n{dom}"));
    let open = dom[..at].rfind('<').unwrap_or(0);
    let close = at + dom[at..].find('>').unwrap_or(0);
    &dom[open..=close]
}

/// The text of the element carrying `attr`, which holds no other element.
pub fn text<'a>(dom: &'a str, attr: &str) -> &'a str {
    let tag = start_tag(dom, attr);
    let from = dom.find(tag).unwrap_or(0) + tag.len();
    let len = dom[from..].find('<').unwrap_or(0);
    &dom[from..from + len]
}
