//! The font of the figures' text: a TrueType/OpenType file loaded at run time and registered
//! with plotters (its `ab_glyph` backend needs no system font libraries).
//!
//! [`text_available`] looks once per process, in order: a file given to [`use_font_file`]
//! (`--font`), the `SIMSIAM_FONT` environment variable, common system paths (DejaVu Sans,
//! Liberation Sans, Arial) and `fc-match sans-serif`. When none loads, figures are drawn
//! without text and a warning says so.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use plotters::style::{FontStyle, register_font};

/// The family the font is registered under; plotters' `FontFamily::SansSerif`.
pub const FAMILY: &str = "sans-serif";

/// The environment variable naming a font file.
pub const FONT_ENV: &str = "SIMSIAM_FONT";

/// Where common systems keep a sans-serif TrueType font.
pub const SYSTEM_FONTS: [&str; 9] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/Library/Fonts/Arial.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// `None`: not looked for yet; `Some(found)` afterwards.
static STATE: Mutex<Option<bool>> = Mutex::new(None);

fn state() -> std::sync::MutexGuard<'static, Option<bool>> {
    STATE.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Registers the font in `path` for every figure drawn afterwards in this process.
///
/// # Errors
/// When the file cannot be read or is not a TrueType/OpenType font; the message names it.
pub fn use_font_file(path: &Path) -> Result<()> {
    register(path)?;
    *state() = Some(true);
    Ok(())
}

fn register(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read the font {}", path.display()))?;
    // plotters keeps fonts for the life of the process: a file is leaked once per
    // registration, which the CLI does once.
    if looks_like_a_font(&bytes) {
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        for style in [FontStyle::Normal, FontStyle::Bold] {
            if register_font(FAMILY, style, bytes).is_err() {
                bail!("{}: not a TrueType or OpenType font", path.display());
            }
        }
        Ok(())
    } else {
        bail!("{}: not a TrueType or OpenType font", path.display())
    }
}

/// A cheap check of the file's magic number, so a wrong file is not leaked.
fn looks_like_a_font(bytes: &[u8]) -> bool {
    matches!(bytes.get(..4), Some([0, 1, 0, 0] | b"OTTO" | b"true" | b"ttcf"))
}

/// The font files to try, in order, without `--font`.
fn candidates() -> Vec<(PathBuf, &'static str)> {
    let mut out = Vec::new();
    if let Some(path) = std::env::var_os(FONT_ENV).filter(|p| !p.is_empty()) {
        out.push((PathBuf::from(path), FONT_ENV));
    }
    out.extend(SYSTEM_FONTS.iter().map(|p| (PathBuf::from(p), "system path")));
    let fc_match = std::process::Command::new("fc-match").args(["-f", "%{file}", "sans-serif"]).output();
    if let Some(output) = fc_match.ok().filter(|o| o.status.success()) {
        let file = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if !file.is_empty() {
            out.push((PathBuf::from(file), "fc-match"));
        }
    }
    out
}

/// Whether text can be drawn: registers a font on the first call (see the module docs) and
/// remembers the answer. Without a font it warns once.
pub fn text_available() -> bool {
    let mut state = state();
    if let Some(found) = *state {
        return found;
    }
    let mut found = false;
    for (path, source) in candidates() {
        if source != FONT_ENV && !path.is_file() {
            continue;
        }
        match register(&path) {
            Ok(()) => {
                tracing::debug!("figure text in {} (from {source})", path.display());
                found = true;
                break;
            }
            Err(e) => tracing::warn!("{e:#} (from {source}); trying the next font"),
        }
    }
    if !found {
        tracing::warn!(
            "no font found (give one with --font or {FONT_ENV}=path/to/font.ttf): drawing figures without text"
        );
    }
    *state = Some(found);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_a_font_is_an_error_naming_it() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("font.ttf");
        std::fs::write(&path, b"not a font at all")?;
        let message = format!("{:#}", register(&path).err().context("accepted a text file")?);
        assert!(message.contains("font.ttf") && message.contains("not a TrueType"), "{message}");
        let message = format!("{:#}", register(&dir.path().join("missing.ttf")).err().context("no error")?);
        assert!(message.contains("missing.ttf"), "{message}");
        Ok(())
    }
}
