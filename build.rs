//! Names the commit the binary is built from: `PRMONITOR_BUILD_COMMIT`, read
//! by `prmonitor --version` and `prmonitor_build_info`. From git when the
//! source is a checkout, else from `PRMONITOR_COMMIT` (a tarball or image
//! build that knows it), else `unknown`.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=PRMONITOR_COMMIT");
    let commit =
        from_git().or_else(|| std::env::var("PRMONITOR_COMMIT").ok().filter(|c| !c.trim().is_empty()));
    let commit = commit.as_deref().map_or("unknown", str::trim).to_owned();
    println!("cargo:rustc-env=PRMONITOR_BUILD_COMMIT={commit}");
}

/// `git rev-parse --short=12 HEAD`, and the files whose change moves HEAD,
/// so the script reruns on a commit or checkout and not on every build.
fn from_git() -> Option<String> {
    let git = Path::new(".git");
    if !git.exists() {
        return None;
    }
    // A worktree's `.git` is a file pointing elsewhere: then git alone knows
    // where HEAD lives, and watching `.git` itself is the best cheap choice.
    if git.is_dir() {
        println!("cargo:rerun-if-changed=.git/HEAD");
        let head = std::fs::read_to_string(git.join("HEAD")).unwrap_or_default();
        if let Some(reference) = head.strip_prefix("ref:").map(str::trim) {
            let loose = git.join(reference);
            // A ref may live in packed-refs only; watching a missing file would rerun every build.
            if loose.exists() {
                println!("cargo:rerun-if-changed={}", loose.display());
            }
            if git.join("packed-refs").exists() {
                println!("cargo:rerun-if-changed=.git/packed-refs");
            }
        }
    } else {
        println!("cargo:rerun-if-changed=.git");
    }
    let out = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output().ok()?;
    let commit = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !commit.is_empty()).then_some(commit)
}
