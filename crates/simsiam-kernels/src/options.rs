//! The program's choices for the kernels: how wide the vector code may go, when Winograd
//! runs, and whether to bypass our kernels for candle's stock ops.
//!
//! Libraries never read the environment: a program builds a [`KernelOptions`] (from its
//! flags, or from `SIMSIAM_*` variables through [`KernelOptions::from_vars`]) and installs it
//! once with [`set_kernel_options`], before its first step. Every kernel reads the installed
//! options on each call, so a test can switch paths between two runs in one process.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// A level of vector instructions our CPU kernels are compiled for, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Plain Rust, vectorised only as far as the compiler's baseline target allows, and the
    /// `gemm` crate's products (which dispatch by themselves).
    Portable,
    /// x86-64 with AVX2 and FMA: 8 `f32` lanes, our `sgemm` micro-kernel and the Winograd
    /// tile transforms.
    Avx2,
    /// AVX2 and FMA plus AVX-512F: `sgemm`'s micro-kernel on 16-lane registers (the rest of
    /// the AVX2 code as it is).
    Avx512,
}

impl Isa {
    /// Every level, lowest first.
    pub const ALL: [Isa; 3] = [Isa::Portable, Isa::Avx2, Isa::Avx512];

    /// The widest level this CPU runs (detected once).
    pub fn detected() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            use std::sync::OnceLock;
            static DETECTED: OnceLock<Isa> = OnceLock::new();
            *DETECTED.get_or_init(|| {
                let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
                match (avx2, is_x86_feature_detected!("avx512f")) {
                    (true, true) => Isa::Avx512,
                    (true, false) => Isa::Avx2,
                    _ => Isa::Portable,
                }
            })
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Isa::Portable
        }
    }

    /// The level the kernels use now: the detected one, capped by
    /// [`KernelOptions::max_isa`].
    pub fn active() -> Isa {
        Isa::detected().min(installed_max_isa())
    }

    /// The levels this CPU can run, lowest first (each can be forced for tests and benchmarks).
    pub fn available() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|&isa| isa <= Isa::detected()).collect()
    }

    /// The name used in options, benchmark records and logs: `portable`, `avx2`, `avx512`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Isa {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Isa::ALL.into_iter().find(|isa| isa.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Isa::ALL.iter().map(|isa| isa.name()).collect();
            format!("unknown ISA level `{s}`, expected one of {}", names.join(", "))
        })
    }
}

/// When 3x3 stride-1 convolutions take the Winograd `F(2x2, 3x3)` path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Winograd {
    /// Where it was measured to win: wide maps and 512-channel layers.
    #[default]
    Auto,
    /// Never: every convolution goes through im2col.
    Off,
    /// Every convolution that fits (the golden tests use this to cover the path).
    Always,
}

/// The program's choices for the kernels; [`Default`] is what a program should want.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KernelOptions {
    /// The widest vector level the kernels may use (they use less where the CPU has less).
    pub max_isa: Isa,
    /// When convolutions take the Winograd path.
    pub winograd: Winograd,
    /// Route every op through candle's stock implementations instead of ours (for
    /// comparisons).
    pub stock: bool,
    /// Columns of one chunk of a convolution's unfolded input (2048 by default; a tuning
    /// knob for experiments).
    pub conv_columns: usize,
    /// Whether networks that have their own training backward pass on these kernels (the
    /// ResNets of `simsiam-models`) use it instead of candle's autograd (true by default;
    /// false for comparisons). Both give the same gradients.
    pub taped_backward: bool,
}

impl Default for KernelOptions {
    fn default() -> Self {
        Self {
            max_isa: Isa::Avx512,
            winograd: Winograd::Auto,
            stock: false,
            conv_columns: 2048,
            taped_backward: true,
        }
    }
}

impl KernelOptions {
    /// The options named by the variables `SIMSIAM_ISA` (`portable`, `avx2`, `avx512`),
    /// `SIMSIAM_WINOGRAD` (`0` off, `1` always), `SIMSIAM_STOCK_KERNELS` (`1`) and
    /// `SIMSIAM_CONV_COLUMNS` (a positive count) and `SIMSIAM_TAPED_BACKWARD` (`0` for candle's
    /// autograd), looked up through `var`; unset ones keep their defaults. Programs pass
    /// `|k| std::env::var(k).ok()`.
    ///
    /// # Errors
    /// A message naming the variable and the value it could not take.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut options = Self::default();
        if let Some(v) = var("SIMSIAM_ISA") {
            options.max_isa = v.parse().map_err(|e| format!("SIMSIAM_ISA: {e}"))?;
        }
        options.winograd = match var("SIMSIAM_WINOGRAD").as_deref() {
            None | Some("") | Some("auto") => Winograd::Auto,
            Some("0") => Winograd::Off,
            Some("1") => Winograd::Always,
            Some(v) => return Err(format!("SIMSIAM_WINOGRAD: expected 0, 1 or auto, got `{v}`")),
        };
        options.stock = match var("SIMSIAM_STOCK_KERNELS").as_deref() {
            None | Some("") | Some("0") => false,
            Some("1") => true,
            Some(v) => return Err(format!("SIMSIAM_STOCK_KERNELS: expected 0 or 1, got `{v}`")),
        };
        if let Some(v) = var("SIMSIAM_CONV_COLUMNS") {
            options.conv_columns = v
                .parse()
                .ok()
                .filter(|&n: &usize| n > 0)
                .ok_or_else(|| format!("SIMSIAM_CONV_COLUMNS: expected a positive count, got `{v}`"))?;
        }
        options.taped_backward = match var("SIMSIAM_TAPED_BACKWARD").as_deref() {
            None | Some("") | Some("1") => true,
            Some("0") => false,
            Some(v) => return Err(format!("SIMSIAM_TAPED_BACKWARD: expected 0 or 1, got `{v}`")),
        };
        Ok(options)
    }
}

static MAX_ISA: AtomicU8 = AtomicU8::new(Isa::Avx512 as u8);
static WINOGRAD: AtomicU8 = AtomicU8::new(Winograd::Auto as u8);
static STOCK: AtomicU8 = AtomicU8::new(0);
static CONV_COLUMNS: AtomicUsize = AtomicUsize::new(2048);
static TAPED_BACKWARD: AtomicU8 = AtomicU8::new(1);

/// Installs `options` for every kernel call that starts after it, process-wide.
pub fn set_kernel_options(options: KernelOptions) {
    #[cfg(test)]
    test_options_from_env();
    store(options);
}

fn store(options: KernelOptions) {
    MAX_ISA.store(options.max_isa as u8, Ordering::Relaxed);
    WINOGRAD.store(options.winograd as u8, Ordering::Relaxed);
    STOCK.store(options.stock as u8, Ordering::Relaxed);
    CONV_COLUMNS.store(options.conv_columns.max(1), Ordering::Relaxed);
    TAPED_BACKWARD.store(options.taped_backward as u8, Ordering::Relaxed);
}

/// The installed options ([`KernelOptions::default`] until a program sets others).
pub fn kernel_options() -> KernelOptions {
    #[cfg(test)]
    test_options_from_env();
    let winograd = [Winograd::Auto, Winograd::Off, Winograd::Always]
        .into_iter()
        .find(|&w| w as u8 == WINOGRAD.load(Ordering::Relaxed));
    KernelOptions {
        max_isa: installed_max_isa(),
        winograd: winograd.unwrap_or_default(),
        stock: STOCK.load(Ordering::Relaxed) == 1,
        conv_columns: CONV_COLUMNS.load(Ordering::Relaxed),
        taped_backward: TAPED_BACKWARD.load(Ordering::Relaxed) == 1,
    }
}

/// This crate's unit tests are a program of their own: they take their options from the
/// `SIMSIAM_*` variables once, so that `SIMSIAM_ISA=portable cargo test` covers the portable
/// paths. (Outside tests the crate never reads the environment.)
#[cfg(test)]
fn test_options_from_env() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| match KernelOptions::from_vars(|k| std::env::var(k).ok()) {
        Ok(options) => store(options),
        Err(e) => panic!("{e}"),
    });
}

/// The installed [`KernelOptions::max_isa`]: one atomic load, as every matrix tile asks.
fn installed_max_isa() -> Isa {
    #[cfg(test)]
    test_options_from_env();
    let stored = MAX_ISA.load(Ordering::Relaxed);
    Isa::ALL.into_iter().find(|&i| i as u8 == stored).unwrap_or(Isa::Portable)
}

/// Whether our AVX2/FMA code may run now: the CPU has it and the options allow it.
pub(crate) fn avx2() -> bool {
    Isa::active() >= Isa::Avx2
}

/// Whether our AVX-512 code may run now: the CPU has it and the options allow it.
pub(crate) fn avx512() -> bool {
    Isa::active() >= Isa::Avx512
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(name, _)| *name == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn no_variables_give_the_defaults() {
        assert_eq!(KernelOptions::from_vars(vars(&[])), Ok(KernelOptions::default()));
    }

    #[test]
    fn variables_set_each_field() {
        let o = KernelOptions::from_vars(vars(&[
            ("SIMSIAM_ISA", "portable"),
            ("SIMSIAM_WINOGRAD", "1"),
            ("SIMSIAM_STOCK_KERNELS", "1"),
            ("SIMSIAM_CONV_COLUMNS", "512"),
            ("SIMSIAM_TAPED_BACKWARD", "0"),
        ]))
        .expect("valid variables");
        assert_eq!(
            o,
            KernelOptions {
                max_isa: Isa::Portable,
                winograd: Winograd::Always,
                stock: true,
                conv_columns: 512,
                taped_backward: false,
            }
        );
        let off = KernelOptions::from_vars(vars(&[("SIMSIAM_WINOGRAD", "0")])).expect("valid");
        assert_eq!(off.winograd, Winograd::Off);
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (name, value) in [
            ("SIMSIAM_ISA", "avx9"),
            ("SIMSIAM_WINOGRAD", "yes"),
            ("SIMSIAM_STOCK_KERNELS", "2"),
            ("SIMSIAM_CONV_COLUMNS", "0"),
            ("SIMSIAM_TAPED_BACKWARD", "no"),
        ] {
            let err = KernelOptions::from_vars(vars(&[(name, value)])).expect_err(name);
            assert!(err.contains(name) && err.contains(value), "{err}");
        }
    }

    #[test]
    fn isa_names_round_trip_and_the_detected_level_is_available() {
        for isa in Isa::ALL {
            assert_eq!(isa.name().parse::<Isa>(), Ok(isa));
        }
        assert!(Isa::available().contains(&Isa::detected()));
        assert_eq!(Isa::available()[0], Isa::Portable);
    }
}
