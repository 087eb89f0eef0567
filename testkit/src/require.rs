//! The checks a root- or tool-dependent test makes first. They panic with a message that
//! says what is missing and how to run the test, so a missing step is a failure, never a
//! silent skip. The tests that call them are `#[ignore = "..."]`, so a plain `cargo test`
//! as a user does not run them at all.

use std::path::Path;

/// Whether this process has effective uid 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Fail the calling test unless it runs as root. `what` names the need, for example
/// "network namespaces".
#[track_caller]
pub fn require_root(what: &str) {
    assert!(
        is_root(),
        "this test needs root ({what}); run it as root with `-- --include-ignored`, \
         as `tests/run.sh` does"
    );
}

/// Fail the calling test unless every tool in `tools` is on `PATH`.
#[track_caller]
pub fn require_tools(tools: &[&str]) {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !on_path(t)).collect();
    assert!(
        missing.is_empty(),
        "this test needs {} on PATH (tests/setup.sh installs them)",
        missing.join(", ")
    );
}

/// Whether `tool` is an executable file in one of the `PATH` directories.
pub fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| is_executable(&dir.join(tool))))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sh_is_on_path_and_a_made_up_tool_is_not() {
        assert!(on_path("sh"));
        assert!(!on_path("mpbond-no-such-tool"));
    }

    #[test]
    #[should_panic(expected = "mpbond-no-such-tool")]
    fn a_missing_tool_fails_the_test() {
        require_tools(&["sh", "mpbond-no-such-tool"]);
    }
}
