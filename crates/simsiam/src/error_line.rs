//! The one line an error of the `simsiam` tool ends with.

/// The error and its causes on one line, `outer: inner: innermost`, each said once: a cause
/// whose words its wrapper already printed (an I/O error inside "path: error", a library error
/// passed through) is left out, and multi-line messages (TOML's) are folded.
pub fn error_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        let folded = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
        if folded.is_empty() || line.contains(&folded) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&folded);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "x: boom" over its source "boom", as `thiserror`'s `#[error("{path}: {source}")]` gives.
    #[derive(Debug)]
    struct WithSource(std::io::Error);

    impl std::fmt::Display for WithSource {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "/data/x.bin: {}", self.0)
        }
    }

    impl std::error::Error for WithSource {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn each_cause_is_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory (os error 2)");
        let e = anyhow::Error::new(WithSource(io)).context("cannot load cifar10");
        assert_eq!(
            error_line(&e),
            "cannot load cifar10: /data/x.bin: No such file or directory (os error 2)"
        );
        let e = anyhow::anyhow!("invalid config\n  |\n1 | x = \n  | ^ expected a value\n").context("a.toml");
        assert_eq!(error_line(&e), "a.toml: invalid config | 1 | x = | ^ expected a value");
    }
}
